"""``gateway audit``, ``gateway consent`` and ``gateway review`` (I/O layer): the commands an
operator answers an auditor with.

- ``audit report --from --to [--sender] [--format json|html|pdf] [--output FILE]``: the
  compliance report (progress on stderr);
- ``audit receipt (--contact-id N | --channel C --contact ADDRESS)``: one person's receipt;
  ``audit verify-receipt FILE [--public-key HEX]``: its offline check; ``audit receipt-key``:
  the public key to publish; ``audit checkpoint``: sign the head now;
- ``consent import FILE --layout listmonk|mailchimp|twilio|gateway --sender S [--program P]
  [--disclosure TEXT] [--dry-run]`` (gateway/app/consent_import.py);
- ``consent export suppression|opt-outs|consent --sender S [--since DATE] [--format csv|json]``;
- ``consent expiring --days N [--sender S]``: consents whose basis lapses within N days
  (gateway/app/expiry_cli.py);
- ``review list [--status open|decided|all]``, ``review confirm|reverse INBOUND_ID --note``.

Read-only commands never create a schema (``connect_existing`` first, as ``audit verify``);
every change they make is audited with the actor ``cli``. Output goes to stdout, progress and
errors to stderr, so ``> file`` captures exactly the document.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from gateway.addresses import normalize_address
from gateway.app import expiry_cli
from gateway.app.audit_wiring import AuditEdge
from gateway.app.consent_import import ImportPlan, open_runtime, run_import
from gateway.audit import receipt_verify
from gateway.audit.html import render_html
from gateway.audit.importers import LAYOUTS
from gateway.audit.progress import Progress
from gateway.audit.signing import CheckpointSigner
from gateway.edges.http.audit_api import parse_instant, window
from gateway.edges.http.server import BadRequest
from gateway.errors import BadInput, ConfigError
from gateway.settings import Settings
from gateway.store.consent_exports import COLUMNS, LISTS
from gateway.store.db import connect_existing, create_pool, existing_dsn
from keywords.loading import load_catalogs
from keywords.model import Channel

_T = TypeVar("_T")
_REPORT_STAGES = 13  # audit_queries.report_data's steps, its counts and the chain


def add_audit_commands(audit_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``audit`` subcommands beside ``verify``."""
    report = audit_sub.add_parser("report", help="the compliance report of a period")
    report.add_argument("--from", dest="start", required=True, help="first day (YYYY-MM-DD, UTC)")
    report.add_argument("--to", dest="end", required=True, help="the day after the last")
    report.add_argument("--sender", help="one sender only")
    report.add_argument("--format", choices=("json", "html", "pdf"), default="html")
    report.add_argument("--output", type=Path, help="write here instead of stdout")
    receipt = audit_sub.add_parser("receipt", help="one person's consent receipt, as JSON")
    receipt.add_argument("--contact-id", type=int)
    receipt.add_argument("--channel", choices=[c.value for c in Channel])
    receipt.add_argument("--contact", help="the number or address")
    receipt.add_argument("--output", type=Path)
    check = audit_sub.add_parser("verify-receipt", help="check a receipt offline")
    check.add_argument("file")
    check.add_argument("--public-key", action="append", default=[])
    audit_sub.add_parser("receipt-key", help="print the public key receipts are checked with")
    audit_sub.add_parser("checkpoint", help="sign the ledger's head now")


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``consent`` and ``review`` commands."""
    consent = sub.add_parser("consent", help="consent import and export")
    consent_sub = consent.add_subparsers(dest="consent_command", required=True)
    imp = consent_sub.add_parser("import", help="import consent from another system's export")
    imp.add_argument("file", type=Path)
    imp.add_argument("--layout", choices=LAYOUTS, required=True)
    imp.add_argument("--sender", required=True)
    imp.add_argument("--program", help="the program the rows are for (not with --layout gateway)")
    imp.add_argument("--format", choices=("csv", "json"), help="default: from the file name")
    imp.add_argument("--source-system", help="names the source in the evidence (default: layout)")
    imp.add_argument("--disclosure", default="", help="the consent text or its version shown")
    imp.add_argument(
        "--dry-run", action="store_true", help="print what would change; write nothing"
    )
    imp.add_argument("--no-progress", action="store_true")
    exp = consent_sub.add_parser("export", help="a list of one sender, to stdout")
    exp.add_argument("list", choices=sorted(LISTS))
    exp.add_argument("--sender", required=True)
    exp.add_argument("--since", default="1970-01-01")
    exp.add_argument("--format", choices=("csv", "json"), default="csv")
    expiry_cli.add_parser(consent_sub)  # consent expiring (docs/rules.md)
    review = sub.add_parser("review", help="texts flagged needs_review")
    review_sub = review.add_subparsers(dest="review_command", required=True)
    listing = review_sub.add_parser("list", help="flagged texts, oldest first, as JSON")
    listing.add_argument("--status", choices=("open", "decided", "all"), default="open")
    listing.add_argument("--limit", type=int, default=100)
    for action in ("confirm", "reverse"):
        one = review_sub.add_parser(action, help=f"{action} the reading of one flagged text")
        one.add_argument("inbound_id", type=int)
        one.add_argument("--note", required=True)


async def _with_audit(settings: Settings, work: Callable[[AuditEdge], Awaitable[_T]]) -> _T:
    """``work`` with the audit service over a pool of an existing schema."""
    async with existing_dsn(settings) as dsn:
        conn = await connect_existing(dsn, settings.database)  # refuses a missing ledger
        await conn.close()
        pool = await create_pool(dsn, settings.database)
        try:
            catalogs = load_catalogs(settings.senders_dir)
            return await work(AuditEdge(settings, pool, catalogs))
        finally:
            await pool.close()


def _write(data: bytes, output: Path | None) -> None:
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        output.write_bytes(data)


async def _report(settings: Settings, args: argparse.Namespace) -> int:
    try:
        start, end = window(args.start, args.end)
    except BadRequest as exc:
        raise ConfigError(str(exc)) from exc
    bar = Progress("report", _REPORT_STAGES)
    stages = iter(range(1, _REPORT_STAGES + 1))

    async def work(audit: AuditEdge) -> dict[str, Any]:
        return await audit.report(start, end, args.sender, lambda s: bar.update(next(stages), s))

    document = await _with_audit(settings, work)
    bar.finish()
    if args.format == "json":
        data = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False).encode()
    elif args.format == "html":
        data = render_html(document).encode()
    else:
        from gateway.app.audit_pdf import html_to_pdf

        data = await html_to_pdf(render_html(document))
    _write(data, args.output)
    found = len(document["findings"])
    print(f"gateway: report {args.start} to {args.end}: {found} finding(s)", file=sys.stderr)
    return 0


async def _receipt(settings: Settings, args: argparse.Namespace) -> int:
    async def work(audit: AuditEdge) -> dict[str, Any] | None:
        contact_id = args.contact_id
        if contact_id is None:
            if not (args.channel and args.contact):
                raise ConfigError("give --contact-id, or --channel and --contact")
            channel = Channel(args.channel)
            address = normalize_address(channel, args.contact, settings.pipeline.default_region)
            contact_id = await audit.chain.contact_id(channel.value, address)
            if contact_id is None:
                return None
        return await audit.receipt(contact_id)

    document = await _with_audit(settings, work)
    if document is None:
        print("gateway: no such contact", file=sys.stderr)
        return 1
    _write(json.dumps(document, indent=2, ensure_ascii=False).encode() + b"\n", args.output)
    return 0


async def _checkpoint(settings: Settings) -> int:
    async def work(audit: AuditEdge) -> list[dict[str, Any]]:
        made = await audit.chain.checkpoint_all()
        return [{"id": c.id, "first_seq": c.first_seq, "last_seq": c.last_seq,
                 "head": c.head_hash.hex(), "key_id": c.key_id} for c in made]  # fmt: skip

    print(json.dumps({"checkpoints": await _with_audit(settings, work)}, indent=2))
    return 0


def _catalog_channel(settings: Settings, sender: str) -> Channel:
    catalog = load_catalogs(settings.senders_dir).get(sender)
    if catalog is None:
        raise ConfigError(f"unknown sender {sender!r}")
    return catalog.channel


async def _export(settings: Settings, args: argparse.Namespace) -> int:
    channel = _catalog_channel(settings, args.sender)
    try:
        since = parse_instant(args.since, "since")
    except BadRequest as exc:
        raise ConfigError(str(exc)) from exc
    columns = COLUMNS[args.list]
    out = sys.stdout

    async def work(audit: AuditEdge) -> int:
        count = 0
        writer = csv.writer(out)
        if args.format == "csv":
            writer.writerow(columns)
        else:
            out.write('{"rows":[')
        async for batch in audit.stream(args.list, args.sender, channel.value, since):
            for row in batch:
                values = [_text(row.get(c)) for c in columns]
                if args.format == "csv":
                    writer.writerow(values)
                else:
                    out.write(
                        ("," if count else "") + json.dumps(dict(zip(columns, values, strict=True)))
                    )
                count += 1
        if args.format == "json":
            out.write("]}\n")
        return count

    count = await _with_audit(settings, work)
    print(f"gateway: {count} rows", file=sys.stderr)
    return 0


def _text(value: object) -> object:
    return value.isoformat() if isinstance(value, datetime) else value


async def _review(settings: Settings, args: argparse.Namespace) -> int:
    async def work(audit: AuditEdge) -> Any:
        if args.review_command == "list":
            return {"items": await audit.flagged(status=args.status, limit=args.limit, after=0)}
        return await audit.decide(args.inbound_id, args.review_command, args.note, "cli")

    try:
        result = await _with_audit(settings, work)
    except BadInput as exc:
        print(f"gateway: {exc.message}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


async def _import(settings: Settings, args: argparse.Namespace) -> int:
    path: Path = args.file
    if not await asyncio.to_thread(path.is_file):
        raise ConfigError(f"{path}: no such file")
    fmt = args.format or ("json" if path.suffix.lower() in (".json", ".jsonl") else "csv")
    if args.layout != "gateway" and not args.program:
        raise ConfigError("--program is needed: the file does not say which program it is for")
    plan = ImportPlan(
        path=path,
        layout=args.layout,
        fmt=fmt,
        channel=_catalog_channel(settings, args.sender),
        sender=args.sender,
        program=args.program,
        source_system=args.source_system or args.layout,
        disclosure=args.disclosure,
        dry_run=args.dry_run,
    )
    async with existing_dsn(settings) as dsn, open_runtime(settings, dsn) as runtime:
        summary = await run_import(runtime, plan, progress=not args.no_progress)
    print(json.dumps(summary.as_json(plan), indent=2), file=sys.stderr)
    return 0


async def run(settings: Settings, args: argparse.Namespace) -> int:
    """Carry out one of these commands; 0 on success."""
    if args.command == "audit":
        sub = args.audit_command
        if sub == "verify-receipt":
            keys = [f"--public-key={k}" for k in args.public_key]
            return receipt_verify.main([args.file, *keys])
        if sub == "receipt-key":
            signer = CheckpointSigner.from_env(settings.env, settings.secret_key)
            print(json.dumps({"key_id": signer.key_id, "public_key": signer.public_key.hex(),
                              "algorithm": "Ed25519"}))  # fmt: skip
            return 0
        if sub == "report":
            return await _report(settings, args)
        if sub == "receipt":
            return await _receipt(settings, args)
        return await _checkpoint(settings)
    if args.command == "consent":
        if args.consent_command == "import":
            return await _import(settings, args)
        if args.consent_command == "expiring":
            return await expiry_cli.run(settings, args)
        return await _export(settings, args)
    return await _review(settings, args)
