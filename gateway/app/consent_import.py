"""``gateway consent import`` (I/O layer): consent from other systems, through the pipeline.

Each row becomes an ``InboundMessage.decided`` (method ``import``, no reply: nobody is texted
or mailed because of an import) and goes through the same pipeline and writer as every other
change, so the ledger chains it, the cache is invalidated before it commits and the gate
sees it at once (docs/DESIGN.md, invariants 1, 2 and 4). Its evidence names the source
system, the original time and method, the disclosure shown, and where in which file it was.

What an import does not do:

- re-subscribe: an opt-in for someone opted out here is kept out (``kept_opt_out``); only
  the person's own opt-in does that (README "Data-subject rights");
- overrule a newer change: a row older than the state recorded here is ``stale``;
- bring an erased person back: a suppressed address is refused for every row, opt-outs too
  (a new contact would hold the address again, GDPR art. 17);
- opt in without a disclosure: the text shown must be named (``--disclosure`` or the file).

A re-run changes nothing: a row whose state is already here is ``unchanged`` and is not sent,
and every row that is sent carries a dedupe key made from its source, scope, address, action
and original time, so even a run stopped half way and started again records each row once
(invariant 3). Rows are read and decided a chunk at a time, with at most one chunk in
flight, so memory stays bounded whatever the file's size.

Without Redis, the import takes the schema's instance lock like ``serve``: a gateway running
meanwhile would keep answering from an in-process cache the import cannot tell.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import asyncpg
import redis.asyncio as aioredis

from gateway.addresses import key_and_send_address
from gateway.app.api_wiring import CatalogAdmin, build_suppression
from gateway.audit.importers import BytesCounter, ImportRow, Skipped, parse
from gateway.audit.progress import Progress
from gateway.catalogs import CatalogRegistry
from gateway.errors import BadInput, ConfigError, Suppressed, TemporaryFailure
from gateway.messages import InboundMessage, Method
from gateway.metrics import Metrics
from gateway.pipeline import Pipeline
from gateway.settings import Settings
from gateway.store.audit_log import AuditLog
from gateway.store.cache import ConsentCache, LocalConsentCache, RedisConsentCache
from gateway.store.consent_exports import ConsentExports
from gateway.store.db import create_pool
from gateway.store.guard import CacheGuard
from gateway.store.instance_lock import InstanceLock
from gateway.store.sender_overrides import SenderOverrides
from gateway.store.suppression import Suppression
from gateway.store.writer import ConsentWriter
from keywords.catalog import SenderCatalog
from keywords.loading import load_catalogs
from keywords.model import Channel, IntentKind

log = logging.getLogger(__name__)

CHUNK = 5_000
_MAX_EVIDENCE = 500  # characters per evidence value taken from a file
_RETRIES = 5


@dataclass(slots=True)
class Runtime:
    """What an import needs of a gateway: the pipeline and what it reads."""

    pool: asyncpg.Pool
    pipeline: Pipeline
    catalogs: CatalogRegistry
    suppression: Suppression
    exports: ConsentExports
    region: str


@contextlib.asynccontextmanager
async def open_runtime(settings: Settings, dsn: str) -> AsyncIterator[Runtime]:
    """The writer, cache, guard and pipeline of one short-lived instance (no edges)."""
    s = settings
    async with contextlib.AsyncExitStack() as stack:
        pool = await create_pool(dsn, s.database)
        stack.push_async_callback(pool.close)

        connect = lambda: asyncpg.connect(dsn, timeout=s.database.command_timeout_seconds)  # noqa: E731
        lock = InstanceLock(connect, s.database.schema, shared=s.redis_url is not None)
        await lock.acquire()
        stack.push_async_callback(lock.release)
        suppression = build_suppression(s)
        await suppression.prepare(pool)
        await suppression.load(pool)
        cache: ConsentCache
        if s.redis_url is not None:
            cache = RedisConsentCache(
                aioredis.Redis.from_url(
                    s.redis_url,
                    socket_timeout=s.cache.operation_timeout_seconds,
                    socket_connect_timeout=s.cache.operation_timeout_seconds,
                ),
                secret=s.secret_key,
                prefix=s.cache.key_prefix,
                entry_ttl=s.cache.entry_ttl_seconds,
                tombstone_ttl=s.cache.tombstone_ttl_seconds,
            )
        else:
            cache = LocalConsentCache(entry_ttl=s.cache.entry_ttl_seconds)
        stack.push_async_callback(cache.close)
        metrics = Metrics()
        guard = CacheGuard(
            cache,
            pool,
            interval=s.cache.health_interval_seconds,
            metrics=metrics,
            channel=f"{s.database.schema}_cache_repair",
            connect=connect,
        )
        await guard.poll_once()
        guard_task = asyncio.create_task(guard.run(), name="import-cache-guard")

        async def stop_guard() -> None:
            guard_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await guard_task

        stack.push_async_callback(stop_guard)
        catalogs = CatalogRegistry(load_catalogs(s.senders_dir))
        admin = CatalogAdmin(
            SenderOverrides(pool, channel=f"{s.database.schema}_api"), AuditLog(pool), catalogs
        )
        await admin.reload()  # senders changed through the admin API count as they do in serve
        writer = ConsentWriter(
            pool, cache, guard, metrics, max_batch=s.pipeline.max_batch, suppression=suppression
        )
        writer.start()
        stack.push_async_callback(writer.stop)
        pipeline = Pipeline(
            catalogs,
            writer,
            metrics,
            default_region=s.pipeline.default_region,
            max_text_chars=s.pipeline.max_text_chars,
            revoke_all=s.rules.revoke_all,
        )
        yield Runtime(
            pool, pipeline, catalogs, suppression, ConsentExports(pool), s.pipeline.default_region
        )


@dataclass(frozen=True, slots=True)
class ImportPlan:
    """What the command was asked to do."""

    path: Path
    layout: str
    fmt: str  # "csv" or "json"
    channel: Channel
    sender: str
    program: str | None  # None: every row names its own (``gateway`` layout)
    source_system: str
    disclosure: str
    dry_run: bool


@dataclass(slots=True)
class Summary:
    """Counts by outcome; the command prints it as JSON."""

    rows: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)

    def as_json(self, plan: ImportPlan) -> dict[str, object]:
        return {
            "file": plan.path.name,
            "layout": plan.layout,
            "sender": plan.sender,
            "dry_run": plan.dry_run,
            "rows": self.rows,
            "outcomes": dict(sorted(self.outcomes.items())),
        }


def dedupe_key(plan: ImportPlan, program: str, address: str, row: ImportRow, step: str) -> str:
    """The key that makes a row one event however often it is imported."""
    text = "|".join(
        (plan.source_system, plan.channel.value, plan.sender, program, address, row.action,
         row.original_time.isoformat(), step)
    )  # fmt: skip
    return "import:" + hashlib.sha256(text.encode()).hexdigest()[:48]


def _evidence(plan: ImportPlan, row: ImportRow, disclosure: str) -> dict[str, str]:
    extra = {k: v[:_MAX_EVIDENCE] for k, v in row.evidence.items() if v}
    return {
        **dict(list(extra.items())[:20]),
        "source_system": plan.source_system,
        "source_file": plan.path.name,
        "source_line": str(row.line),
        "original_time": row.original_time.isoformat(),
        "original_method": row.original_method,
        "disclosure": disclosure or "n/a",
        **({"confirmed_time": row.confirmed_time.isoformat()} if row.confirmed_time else {}),
    }


@dataclass(frozen=True, slots=True)
class _Step:
    row: ImportRow
    program: str
    address: str
    send_to: str
    kinds: tuple[IntentKind, ...]
    old: str
    new: str


def _plan_row(
    plan: ImportPlan,
    catalog: SenderCatalog,
    row: ImportRow,
    address: str,
    send_to: str,
    state: tuple[str, object] | None,
) -> _Step | str:
    """What one row does, or the outcome code of a row that does nothing."""
    program = row.program or plan.program or ""
    if not catalog.has_program(program):
        return "refused:unknown_program"
    old = state[0] if state else "none"
    since = state[1] if state else None
    if row.action == "opt_out":
        if old == "opted_out":
            return "unchanged"
    elif old == "opted_in" or (
        old == "pending" and row.confirmed_time is None and catalog.program(program).double_opt_in
    ):
        return "unchanged"
    if row.action == "opt_in" and old == "opted_out":
        return "kept_opt_out"  # only the person's own opt-in re-subscribes
    if since is not None and since > row.original_time:  # type: ignore[operator]
        return "stale"  # a newer change is recorded here: it stands
    if row.action == "opt_out":
        return _Step(row, program, address, send_to, (IntentKind.OPT_OUT,), old, "opted_out")
    if not (row.disclosure or plan.disclosure):
        return "refused:no_disclosure"
    if not catalog.program(program).double_opt_in:
        return _Step(row, program, address, send_to, (IntentKind.JOIN,), old, "opted_in")
    if row.confirmed_time is None:
        return _Step(row, program, address, send_to, (IntentKind.JOIN,), old, "pending")
    kinds = (
        (IntentKind.CONFIRM_LINK,)
        if old == "pending"
        else (IntentKind.JOIN, IntentKind.CONFIRM_LINK)
    )
    return _Step(row, program, address, send_to, kinds, old, "opted_in")


async def _apply(runtime: Runtime, plan: ImportPlan, step: _Step) -> str:
    """Send one row's events through the pipeline; its outcome code."""
    disclosure = step.row.disclosure or plan.disclosure
    committed = False
    for kind in step.kinds:
        message = InboundMessage.decided(
            channel=plan.channel,
            sender=plan.sender,
            contact=step.send_to,
            method=Method.IMPORT,
            dedupe_key=dedupe_key(plan, step.program, step.address, step.row, kind.value),
            kind=kind,
            program=step.program,
            evidence=_evidence(plan, step.row, disclosure),
            suppress_replies=True,  # an import never messages anyone
            # Another system's record of an earlier opt-out, not a revocation received now:
            # it keeps the program it names (docs/rules.md, revoke-all).
            revokes=False,
        )
        for attempt in range(_RETRIES):
            try:
                outcome = await runtime.pipeline.handle(message)
                break
            except Suppressed:
                return "refused:suppressed"
            except BadInput as exc:
                return f"refused:{exc.code}"
            except TemporaryFailure:
                if attempt == _RETRIES - 1:
                    raise
                await asyncio.sleep(0.2 * (attempt + 1))  # backoff before a retry
        committed = committed or bool(outcome.ledger_seqs)
    return "applied" if committed else "duplicate"


async def _chunk(
    runtime: Runtime,
    plan: ImportPlan,
    items: list[ImportRow | Skipped],
    summary: Summary,
    out: TextIO,
) -> None:
    catalog = runtime.catalogs.get(plan.sender)
    if catalog is None or catalog.channel is not plan.channel:
        raise ConfigError(f"unknown {plan.channel.value} sender {plan.sender!r}")
    keyed: list[tuple[ImportRow, str, str]] = []
    for item in items:
        summary.rows += 1
        if isinstance(item, Skipped):
            summary.outcomes[f"skipped:{item.reason}"] += 1
            continue
        try:
            address, send_to = key_and_send_address(plan.channel, item.contact, runtime.region)
        except BadInput:
            summary.outcomes["refused:invalid_address"] += 1
            continue
        keyed.append((item, address, send_to))
    # Asked of the table, not the in-memory copy: an erasure on another instance since this
    # import started reaches it by NOTIFY, which this short-lived process does not follow.
    erased = await runtime.exports.suppressed(
        plan.channel.value,
        [runtime.suppression.digests(plan.channel.value, a, s) for _, a, s in keyed],
    )
    if erased:
        summary.outcomes["refused:suppressed"] += len(erased)
        keyed = [k for i, k in enumerate(keyed) if i not in erased]
    programs = {r.program or plan.program or "" for r, _, _ in keyed}
    states: dict[tuple[str, str], tuple[str, object]] = {}
    for program in programs:
        found = await runtime.exports.states(
            plan.channel.value, plan.sender, program, [a for _, a, _ in keyed]
        )
        states.update({(a, program): v for a, v in found.items()})
    steps: list[_Step] = []
    for row, address, send_to in keyed:
        program = row.program or plan.program or ""
        planned = _plan_row(plan, catalog, row, address, send_to, states.get((address, program)))
        if isinstance(planned, str):
            summary.outcomes[planned] += 1
        else:
            steps.append(planned)
    if plan.dry_run:
        for s in steps:
            summary.outcomes["would_apply"] += 1
            out.write(json.dumps({"line": s.row.line, "contact": s.send_to, "program": s.program,
                                  "from": s.old, "to": s.new}) + "\n")  # fmt: skip
        return
    for outcome in await asyncio.gather(*(_apply(runtime, plan, s) for s in steps)):
        summary.outcomes[outcome] += 1


def _chunks(items: Iterator[ImportRow | Skipped]) -> Iterator[list[ImportRow | Skipped]]:
    chunk: list[ImportRow | Skipped] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def run_import(
    runtime: Runtime, plan: ImportPlan, *, out: TextIO = sys.stdout, progress: bool = True
) -> Summary:
    """Import ``plan.path``; the counts by outcome."""
    summary = Summary()
    size = plan.path.stat().st_size
    bar = Progress(f"import {plan.path.name}", size, unit="bytes") if progress else None
    with plan.path.open("rb") as raw:
        counter = BytesCounter(raw)
        for chunk in _chunks(parse(counter, plan.layout, plan.fmt)):
            await _chunk(runtime, plan, chunk, summary, out)
            if bar is not None:
                bar.update(counter.read, f"{summary.rows} rows")
    if bar is not None:
        bar.finish(f"{summary.rows} rows")
    log.info(
        "consent import finished",
        extra={"rows": summary.rows, "dry_run": plan.dry_run, "sender": plan.sender,
               "outcomes": dict(summary.outcomes)},
    )  # fmt: skip
    return summary
