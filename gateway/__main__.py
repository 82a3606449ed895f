"""Command line (I/O layer): serve, migrate, check-config, classify, audit (verify, report,
receipts), consent import and export, review, sign, keys, healthcheck."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import asyncpg

from gateway import logs
from gateway.app import audit_cli, keys_cli, workers
from gateway.app.config_check import check_settings
from gateway.errors import ConfigError
from gateway.security.signing import WEBHOOK_PURPOSE, derive_key, sign
from gateway.settings import Settings, load_settings
from gateway.store.db import connect_existing, create_pool, current_database, embedded_postgres
from gateway.store.ledger import verify
from keywords.audit import audit
from keywords.classify import classify
from keywords.errors import KeywordsError
from keywords.loading import load_catalogs

DEFAULT_CONFIG = Path("config/gateway.toml")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__)
    parser.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG, help="gateway.toml (default: %(default)s)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve_cmd = sub.add_parser("serve", help="run the gateway until SIGTERM")
    serve_cmd.add_argument(
        "--workers", type=int, default=1, help="processes on this host (gateway/app/workers.py)"
    )
    serve_cmd.add_argument(
        "--loop",
        choices=workers.LOOPS,
        default=os.environ.get(workers.LOOP_ENV, "auto"),
        help="event loop (default: $GATEWAY_EVENT_LOOP or auto: uvloop when installed)",
    )
    sub.add_parser("migrate", help="apply database migrations and exit")
    sub.add_parser(
        "check-config",
        help="check every setting as serve reads it, load every sender, list audit findings",
    )
    classify_cmd = sub.add_parser("classify", help="print the intent of a text as JSON")
    classify_cmd.add_argument("--to", required=True, help="the sender (short code, list)")
    classify_cmd.add_argument("text")
    audit_cmd = sub.add_parser("audit", help="ledger audits")
    audit_sub = audit_cmd.add_subparsers(dest="audit_command", required=True)
    audit_sub.add_parser("verify", help="re-derive the ledger's hash chain")
    audit_cli.add_audit_commands(audit_sub)
    sign_cmd = sub.add_parser("sign", help="print an X-Gateway-Signature header for a body")
    sign_cmd.add_argument("body", help="the exact request body")
    keys_cli.add_parser(sub)
    audit_cli.add_parsers(sub)
    sub.add_parser(
        "healthcheck",
        help="exit 0 if this host's gateway can record an opt-out (/readyz?scope=intake on"
        " the configured [http] port), else 1",
    )
    return parser


def _healthcheck(settings: Settings) -> int:
    """The container's HEALTHCHECK: the port comes from the configuration, not the image."""
    host = settings.http.host
    if host in ("", "0.0.0.0"):  # noqa: S104 - a wildcard listener is asked on loopback
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    url = f"http://{host}:{settings.http.port}/readyz?scope=intake"
    try:
        with urllib.request.urlopen(url, timeout=4) as resp:
            status = resp.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError as exc:
        print(f"gateway: healthcheck: {url}: {type(exc).__name__}", file=sys.stderr)
        return 1
    print(f"gateway: healthcheck: {url}: {status}")
    return 0 if status == 200 else 1


async def _migrate(settings: Settings) -> int:
    async def run(dsn: str) -> int:
        pool = await create_pool(dsn, settings.database)
        await pool.close()
        print(json.dumps({"migrated": True, "schema": settings.database.schema}))
        return 0

    if settings.database_url is not None:
        return await run(settings.database_url)
    settings.require_embedded_allowed()
    async with embedded_postgres(Path(settings.database.embedded_data_dir)) as dsn:
        return await run(dsn)


async def _audit_verify(settings: Settings) -> int:
    """Re-derive the chain of an existing ledger; never create a cluster, schema or table."""

    async def run(dsn: str) -> int:
        conn = await connect_existing(dsn, settings.database)
        try:
            database = await current_database(conn)
            report = await verify(conn)
        finally:
            await conn.close()
        print(
            json.dumps(
                {
                    "ok": report.ok,
                    "database": database,
                    "schema": settings.database.schema,
                    "events": report.events,
                    "empty": report.events == 0,
                    "redacted": report.redacted,
                    "problems": list(report.problems),
                },
                indent=2,
            )
        )
        if report.events == 0:
            print(
                f"gateway: the ledger in database {database!r}, schema"
                f" {settings.database.schema!r}, is empty",
                file=sys.stderr,
            )
        return 0 if report.ok else 1

    if settings.database_url is not None:
        return await run(settings.database_url)
    settings.require_embedded_allowed()
    data_dir = Path(settings.database.embedded_data_dir)
    async with embedded_postgres(data_dir, create=False) as dsn:
        return await run(dsn)


def _check_config(settings: Settings) -> int:
    check_settings(settings)  # every table as `serve` reads it; a ConfigError exits 2
    catalogs = load_catalogs(settings.senders_dir)
    findings = [f for catalog in catalogs.values() for f in audit(catalog)]
    for finding in findings:
        print(f"{finding.severity}: {finding.source}: {finding.key}: {finding.message}")
    errors = sum(1 for f in findings if f.severity == "error")
    warnings = len(findings) - errors
    print(f"{len(catalogs)} senders, {errors} errors, {warnings} warnings")
    return 1 if errors else 0


def _classify(settings: Settings, sender: str, text: str) -> int:
    catalogs = load_catalogs(settings.senders_dir)
    catalog = catalogs.get(sender)
    if catalog is None:
        print(f"unknown sender {sender!r}; configured: {', '.join(sorted(catalogs))}")
        return 2
    intent = classify(text, catalog)
    print(json.dumps({k: (v.value if hasattr(v, "value") else v)
                      for k, v in dataclasses.asdict(intent).items()}, indent=2))  # fmt: skip
    return 0


def _secret_for_signing(settings: Settings) -> bytes:
    """The current secret; the development key file is read, never created, here."""
    if not settings.secret_key_is_ephemeral:
        return settings.secret_key
    raise ConfigError(
        f"no development key in {settings.dev_secret_file}: set GATEWAY_SECRET_KEY"
        " (or start `gateway serve` once to write one)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gateway`` console script and ``python -m gateway``."""
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config, os.environ)
        logs.configure(settings.logging.level)
        if args.command == "serve":
            return workers.serve_command(settings, args.config, args.workers, args.loop)
        if args.command == "migrate":
            return asyncio.run(_migrate(settings))
        if args.command == "audit" and args.audit_command == "verify":
            return asyncio.run(_audit_verify(settings))
        if args.command in ("audit", "consent", "review"):
            return asyncio.run(audit_cli.run(settings, args))
        if args.command == "keys":
            return asyncio.run(keys_cli.run(settings, args))
        if args.command == "healthcheck":
            return _healthcheck(settings)
        if args.command == "check-config":
            return _check_config(settings)
        if args.command == "classify":
            return _classify(settings, args.to, args.text)
        if args.command == "sign":
            key = derive_key(_secret_for_signing(settings), WEBHOOK_PURPOSE)
            print(sign(key, args.body.encode()))
            return 0
    except (ConfigError, KeywordsError) as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"gateway: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 3
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
