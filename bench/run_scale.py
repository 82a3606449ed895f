"""Scale benchmark: the same figures on a small database and a large one, in the same run.

Each figure is printed for both databases with the ratio large/small, so that a cost which
grows with the data shows as a ratio away from 1.00 (the absolute numbers on a shared
machine drift; two runs minutes apart on the same servers do not drift much):

* the SMPP flow: ``BENCH_SCALE_MOS`` (20,000) STOPs from distinct numbers, new contacts,
  through ``gateway serve --workers 1`` against the node-smpp simulator, exactly as
  bench/run_smpp.py runs it: replies/s and p50/p99 from deliver_sm to the confirmation's
  submit_sm;
* single gate checks in-process (``SendGate.check``, no HTTP), one at a time, of numbers in
  the database and opted in: first with nothing cached (each answer read from PostgreSQL),
  then the same numbers again (near cache); p50/p99;
* the batch gate as bench/run_core.py measures it, 100,000 distinct numbers a call, send
  rules off: the first call (every answer read from PostgreSQL), the next after dropping
  the near cache (from Redis), then the best of five from the near cache.

The near-cache figures read no database at all: they are the control. When they move
between the two columns as much as the others, the machine changed between the runs, not
the cost of the data.

The small database holds ``BENCH_SCALE_SMALL`` (10^4) contacts and the large one
``BENCH_SCALE_LARGE`` (10^7), each plus the batch's 100,000, so a batch of that many
distinct numbers in the database exists in the small one too. Every contact has one
opted-in consent row (12345 / reminders), the inbound event that brought it and its one
ledger event, so the ledger of the large one holds 10^7 + 10^5 events. Numbers are +1646
and +1347 (New York; the MOs come from +1415555 and +1416555, so none collides).

Seeding: the gateway's own ``migrate`` builds the schema, then one ``INSERT ... SELECT
generate_series`` per table runs inside PostgreSQL, with ``session_replication_role =
replica`` so the foreign keys are not checked row by row (the rows are built to satisfy
them) and ``synchronous_commit = off`` (a seed need not be durable). The seeded ledger rows
do not verify as a chain; ``ledger_head`` points at the last of them, so the writer chains
its events onto it, and one checkpoint row covers them, as a running gateway's checkpoint
loop would have left it: the loop then verifies and signs only the benchmark's own events
instead of reading the seeded ones every minute and finding them broken. ``VACUUM
ANALYZE`` runs on the seeded tables, then a ``CHECKPOINT``, before anything is measured. The
seeding time and the row counts are printed. Both schemas and their Redis keys are dropped
at the end, also when a run fails.

With ``BENCH_SCALE_EXPLAIN=1`` the plans of ``writer_record``'s statements on the large
database are printed too, as generic plans (``plan_cache_mode = force_generic_plan``, read
with ``auto_explain``), the way the writer runs them.

Run: ``make bench BENCH=scale`` or ``python -m bench scale``; small trial:
``BENCH_SCALE_LARGE=200000 python -m bench scale``. Needs Node.js and the simulator
(``make smsc-sim`` installs it), PostgreSQL and Redis as for bench/run_smpp.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import statistics
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from bench.cleanup import drop_redis_prefix
from bench.run_core import settings_for as _settings
from bench.run_smpp import PG_URL, REDIS_URL, run_gateway
from gateway.app import Gateway
from gateway.send_rules import SendTerms
from gateway.store.db import migrate
from keywords.model import Channel

CONFIG = Path(__file__).resolve().parent.parent / "config" / "gateway.toml"
SMALL = int(os.environ.get("BENCH_SCALE_SMALL", "10000"))
LARGE = int(os.environ.get("BENCH_SCALE_LARGE", "10000000"))
MOS = int(os.environ.get("BENCH_SCALE_MOS", "20000"))
SINGLES = int(os.environ.get("BENCH_SCALE_SINGLES", "2000"))
EXPLAIN = os.environ.get("BENCH_SCALE_EXPLAIN") == "1"
PREWARM = os.environ.get("BENCH_SCALE_PREWARM", "1") == "1"
# What a gate read from PostgreSQL touches (gateway/store/gate_reads.py): a probe of each
# index and the heap row behind it.
GATE_RELATIONS = ("contacts_channel_address_key", "contacts", "consent_pkey", "consent")
BATCH = 100_000
GATE_ROUNDS = 5
# A Wednesday, 13:00 in New York: inside every shipped window (as bench/run_core.py).
DAYTIME = datetime(2026, 12, 2, 18, 0, tzinfo=UTC)
# The acceptance bound on large/small (or small/large for rates).
BOUND = 1.2
SEEDED_TABLES = ("contacts", "inbound_events", "ledger", "consent", "ledger_checkpoints")

# The g-th seeded number (g from 0), in SQL and in Python; they must agree, and the gate
# checks assert so (an unknown number would be refused). NANP shape (+1 NXX NXX XXXX), so
# the gate's fast path takes it: 8,000,000 numbers under 646, the rest under 347.
_NUMBER_SQL = (
    "'+1' || CASE WHEN g < 8000000 THEN '646' ELSE '347' END"
    " || (200 + (g / 10000) % 800)::text || lpad((g % 10000)::text, 4, '0')"
)


def number(g: int) -> str:
    """The g-th seeded number, as ``_NUMBER_SQL`` writes it."""
    area = 646 if g < 8_000_000 else 347
    return f"+1{area}{200 + (g // 10_000) % 800}{g % 10_000:04d}"


@dataclass
class Seeded:
    """One seeded schema and what seeding it cost."""

    label: str
    schema: str
    contacts: int
    seconds: float = 0.0
    vacuum_seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    gate_bytes: int = 0  # GATE_RELATIONS together
    prewarmed: int = 0  # of those, bytes read into shared buffers by pg_prewarm


@dataclass
class Figures:
    """What one database measured."""

    smpp: dict[str, Any] = field(default_factory=dict)
    single_cold: tuple[float, float] = (0.0, 0.0)  # p50, p99 ms
    single_warm: tuple[float, float] = (0.0, 0.0)
    batch_pg: float = 0.0  # checks/s
    batch_redis: float = 0.0
    batch_near: float = 0.0


async def seed(out: Seeded) -> None:
    """Migrate the schema with the gateway's own migrate, then fill it inside PostgreSQL."""
    schema, contacts = out.schema, out.contacts
    conn = await asyncpg.connect(PG_URL, command_timeout=None)
    try:
        await migrate(conn, schema)
        started = time.perf_counter()
        await conn.execute(f'SET search_path TO "{schema}"')
        # The rows below satisfy every foreign key by construction: checking each one
        # (four index probes per ledger row) would only slow the seed down.
        await conn.execute("SET session_replication_role = replica")
        await conn.execute("SET synchronous_commit = off")
        series = f"FROM generate_series(0, {contacts - 1}) AS g"
        at = "timestamptz '2026-06-01 00:00+00' + g * interval '1 second'"
        # Ids are g + 1 in every table, so each row finds its contact, event and seq.
        await conn.execute(
            f"INSERT INTO contacts (id, channel, address, created_at)"
            f" SELECT g + 1, 'sms', {_NUMBER_SQL}, {at} {series}"
        )
        await conn.execute(
            "INSERT INTO inbound_events (id, dedupe_key, channel, sender, contact_id, method,"
            " received_at, intent, match, needs_review, body, evidence)"
            f" SELECT g + 1, 'seed:' || g, 'sms', '12345', g + 1, 'web_form', {at},"
            f" 'opt_in', 'exact', false, 'web form sign-up', '{{}}'::jsonb {series}"
        )
        # hash = sha256(seq), prev_hash = the previous row's: shaped like a chain, cheap to
        # make, not a chain ledger.py would verify (the checkpoint below covers it).
        await conn.execute(
            "INSERT INTO ledger (seq, contact_id, channel, sender, program, action, method,"
            " old_state, new_state, server_time, carrier_time, inbound_id, evidence,"
            " evidence_sha256, prev_hash, hash)"
            f" SELECT g + 1, g + 1, 'sms', '12345', 'reminders', 'opt_in', 'web_form', 'none',"
            f" 'opted_in', {at}, NULL, g + 1, '{{}}'::jsonb, sha256('{{}}'::bytea),"
            " CASE WHEN g = 0 THEN decode(repeat('00', 32), 'hex')"
            " ELSE sha256(int8send(g)) END, sha256(int8send(g + 1)) "
            f" {series}"
        )
        await conn.execute(
            "INSERT INTO consent (contact_id, sender, program, channel, state, version,"
            f" updated_at, last_seq) SELECT g + 1, '12345', 'reminders', 'sms', 'opted_in', 1,"
            f" {at}, g + 1 {series}"
        )
        await conn.execute(f"SELECT setval('contacts_id_seq', {contacts})")
        await conn.execute(f"SELECT setval('inbound_events_id_seq', {contacts})")
        # The writer reads the head (chain.py, ``sql.lock_head``) and appends after it.
        await conn.execute(
            "UPDATE ledger_head SET seq = $1, hash = sha256(int8send($1::bigint))", contacts
        )
        await conn.execute(
            "INSERT INTO ledger_checkpoints (first_seq, last_seq, head_hash, root, statement,"
            " signature, key_id, public_key) SELECT 1, seq, hash, sha256('seed'::bytea),"
            " '{\"format\":\"seeded by bench/run_scale.py\"}', decode(repeat('00', 64), 'hex'),"
            " 'seed', decode(repeat('00', 32), 'hex') FROM ledger_head"
        )
        await conn.execute("RESET session_replication_role")
        out.seconds = time.perf_counter() - started
        started = time.perf_counter()
        for table in SEEDED_TABLES:
            await conn.execute(f"VACUUM ANALYZE {table}")
        # The seed's dirty pages are written out now, not by the checkpointer while the
        # figures are taken (10^7 rows are gigabytes of them).
        await conn.execute("CHECKPOINT")
        out.vacuum_seconds = time.perf_counter() - started
        for table in (*SEEDED_TABLES, "ledger_head"):
            out.counts[table] = await conn.fetchval(f"SELECT count(*) FROM {table}")  # noqa: S608
        # Tables with their indexes and TOAST: what the disk must hold for the large run.
        out.bytes = await conn.fetchval(
            "SELECT sum(pg_total_relation_size(c.oid))::bigint FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = $1 AND c.relkind = 'r'",
            schema,
        )
        out.gate_bytes = await conn.fetchval(
            "SELECT sum(pg_relation_size(r::regclass))::bigint FROM unnest($1::text[]) r",
            list(GATE_RELATIONS),
        )
        if PREWARM and await conn.fetchval(
            "SELECT true FROM pg_available_extensions WHERE name = 'pg_prewarm'"
        ):
            # The small database is in shared buffers because it was just written; the large
            # one only partly. pg_prewarm (contrib; its autoprewarm worker does the same after
            # a restart in production) gives both the same start, so a ratio away from 1.00
            # is the cost of the data, not of a cold cache. It can only hold what
            # shared_buffers holds: the run prints both sizes. Created in the seeded schema,
            # so dropping the schema drops it (unless it was already installed elsewhere).
            await conn.execute(f'CREATE EXTENSION IF NOT EXISTS pg_prewarm SCHEMA "{schema}"')
            home = await conn.fetchval(
                "SELECT extnamespace::regnamespace::text FROM pg_extension"
                " WHERE extname = 'pg_prewarm'"
            )
            for relation in GATE_RELATIONS:
                out.prewarmed += await conn.fetchval(
                    f"SELECT {home}.pg_prewarm($1::regclass)"
                    " * current_setting('block_size')::bigint",
                    relation,
                )
        head = await conn.fetchval("SELECT seq FROM ledger_head")
        assert head == contacts == out.counts["ledger"], (head, out.counts)
    finally:
        await conn.close()


def _terms(gw: Gateway) -> SendTerms | None:
    """The gate's question at DAYTIME with the send rules off, as run_core's main figure."""
    terms = gw.gate.terms("12345", "reminders", Channel.SMS, at=DAYTIME)
    return None if terms is None else dataclasses.replace(terms, batch=None)


def _quantiles(samples: list[float]) -> tuple[float, float]:
    samples = sorted(samples)
    return statistics.median(samples), samples[int(len(samples) * 0.99)]


async def _singles(gw: Gateway, numbers: list[str]) -> list[float]:
    """ms per ``SendGate.check``, one at a time."""
    terms = _terms(gw)
    out: list[float] = []
    for n in numbers:
        t0 = time.perf_counter()
        answer = await gw.gate.check("12345", "reminders", Channel.SMS, n, terms)
        out.append((time.perf_counter() - t0) * 1000)
        assert answer.allowed, (n, answer)
    return out


async def _batch(gw: Gateway, numbers: list[str]) -> float:
    """Checks/s of one ``check_many`` call over ``numbers``."""
    terms = _terms(gw)
    t0 = time.perf_counter()
    answers = await gw.gate.check_many("12345", "reminders", Channel.SMS, numbers, terms)
    rate = len(numbers) / (time.perf_counter() - t0)
    assert all(a.allowed for a in answers)
    return rate


async def measure_gate(db: Seeded, figures: Figures, prefix: str) -> None:
    """Single checks and the batch gate, in-process, on the seeded schema."""
    # Spread over the whole table, as a send list is: the probes reach every part of the
    # indexes, not a hot corner of them. Singles and the batch do not share numbers.
    picked = random.Random(7).sample(range(db.contacts), SINGLES + BATCH)
    singles = [number(g) for g in picked[:SINGLES]]
    batch = [number(g) for g in picked[SINGLES:]]
    async with Gateway(_settings(db.schema, prefix), serve_http=False) as gw:
        figures.single_cold = _quantiles(await _singles(gw, singles))  # PostgreSQL
        figures.single_warm = _quantiles(await _singles(gw, singles))  # near cache
        figures.batch_pg = await _batch(gw, batch)  # PostgreSQL -> Redis
        gw.cache.forget_local()
        figures.batch_redis = await _batch(gw, batch)  # Redis -> near cache
        figures.batch_near = max([await _batch(gw, batch) for _ in range(GATE_ROUNDS)])


async def explain_writer(db: Seeded) -> None:
    """Print the scans of ``writer_record``'s statements as generic plans on ``db``."""
    conn = await asyncpg.connect(PG_URL)
    plans: list[dict[str, Any]] = []

    def collect(_conn: object, message: asyncpg.PostgresLogMessage) -> None:
        text = message.message
        if text.startswith("duration:") and "{" in text:
            plans.append(json.loads(text[text.index("{") :]))

    def scans(node: dict[str, Any], depth: int = 0) -> list[str]:
        line = f"{'  ' * depth}{node['Node Type']}"
        if "Relation Name" in node:
            line += f" on {node['Relation Name']}"
        if "Index Name" in node:
            line += f" using {node['Index Name']}"
        rows, ms = node.get("Actual Rows", "?"), node.get("Actual Total Time", 0.0)
        line += f" (actual rows {rows}, {ms:.2f} ms)"
        return [line] + [s for c in node.get("Plans", []) for s in scans(c, depth + 1)]

    try:
        await conn.execute(f'SET search_path TO "{db.schema}"')
        for setting in (
            "LOAD 'auto_explain'",
            "SET auto_explain.log_min_duration = 0",
            "SET auto_explain.log_nested_statements = on",
            "SET auto_explain.log_analyze = on",
            "SET auto_explain.log_format = 'json'",
            "SET auto_explain.log_level = 'notice'",
            "SET plan_cache_mode = force_generic_plan",
        ):
            await conn.execute(setting)
        # A STOP from a new number and one from a seeded number, with parameters as the
        # writer sends them (gateway/store/statements.py, ``record``); rolled back.
        new, seeded = "+14175550001", number(db.contacts // 2)
        now = datetime.now(UTC)
        events = [
            (f"explain-{i}", "sms", a, "12345", "sms_keyword", now, None, "opt_out_all",
             "exact", False, "STOP", "{}")
            for i, a in enumerate((new, seeded))
        ]  # fmt: skip
        tr = conn.transaction()
        await tr.start()
        # Prepared first, so asyncpg's own look-ups of the row types are not collected.
        record = await conn.prepare(
            "SELECT * FROM writer_record($1::writer_contact_row[], $2::writer_inbound_row[])"
        )
        conn.add_log_listener(collect)
        await record.fetch(sorted([("sms", new), ("sms", seeded)]), events)
        await tr.rollback()
    finally:
        await conn.close()
    print(f"writer_record on {db.label} ({db.contacts:,} contacts), generic plans:")
    for plan in plans:
        print("  " + plan.get("Query Text", "").split("\n")[0][:100])
        for line in scans(plan["Plan"], 2):
            print(f"  {line}")


async def _drop(schema: str) -> None:
    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def _row(name: str, small: float, large: float, fmt: str = ",.0f") -> None:
    ratio = large / small if small else float("nan")
    print(f"{name:44} {small:>12{fmt}} {large:>12{fmt}} {ratio:>8.2f}")


def _rate(smpp: dict[str, Any]) -> float:
    seconds: float = smpp["reply_seconds"]
    return smpp["replies"] / seconds if seconds else 0.0


async def run() -> None:
    """Seed, measure and drop each database in turn; print both side by side."""
    tag = uuid.uuid4().hex[:8]
    dbs = [
        Seeded("small", f"bench_scale_s_{tag}", SMALL + BATCH),
        Seeded("large", f"bench_scale_l_{tag}", LARGE + BATCH),
    ]
    prefixes = [f"bscale{db.label[0]}{tag}" for db in dbs]
    results: list[Figures] = []
    print(f"{time.strftime('%Y-%m-%d %H:%M')}: scale, {MOS:,} MOs, {SINGLES:,} single checks,"
          f" {BATCH:,} a batch, {os.cpu_count()} cores")  # fmt: skip
    conn = await asyncpg.connect(PG_URL)
    try:
        row = await conn.fetchrow(
            "SELECT current_setting('shared_buffers') AS text,"
            " pg_size_bytes(current_setting('shared_buffers')) AS bytes"
        )
        assert row is not None
        buffers, buffers_bytes = row["text"], row["bytes"]
    finally:
        await conn.close()
    try:
        for db, prefix in zip(dbs, prefixes, strict=True):
            await seed(db)
            counts = ", ".join(f"{t} {n:,}" for t, n in db.counts.items())
            print(f"seeded {db.label} in {db.seconds:.1f} s, then VACUUM ANALYZE and"
                  f" CHECKPOINT in {db.vacuum_seconds:.1f} s; {db.bytes / 2**20:,.0f} MiB,"
                  f" {counts}", flush=True)  # fmt: skip
            fits = "fit in" if db.gate_bytes <= buffers_bytes else "do not fit in"
            print(f"  the gate's indexes and heaps: {db.gate_bytes / 2**20:,.0f} MiB, read by"
                  f" pg_prewarm {db.prewarmed / 2**20:,.0f} MiB; they {fits}"
                  f" shared_buffers ({buffers})", flush=True)  # fmt: skip
            figures = Figures()
            await measure_gate(db, figures, prefix)
            figures.smpp = await run_gateway(1, schema=db.schema, mos=MOS)
            figures.smpp["committed"] -= db.counts["inbound_events"]
            results.append(figures)
            if EXPLAIN and db.label == "large":
                await explain_writer(db)
            await _drop(db.schema)  # before the next seed: the disk holds one at a time
    finally:
        for db, prefix in zip(dbs, prefixes, strict=True):
            await _drop(db.schema)
            await drop_redis_prefix(REDIS_URL, prefix)
    small, large = results
    print(f"{'':44} {'small':>12} {'large':>12} {'l/s':>8}")
    _row("contacts (each: consent, inbound, ledger)", dbs[0].contacts, dbs[1].contacts)
    _row("smpp: replies/s (serve, 1 worker)", _rate(small.smpp), _rate(large.smpp))
    _row("smpp: p50 ms deliver_sm -> submit_sm", small.smpp["p50_ms"], large.smpp["p50_ms"], ",.1f")
    _row("smpp: p99 ms deliver_sm -> submit_sm", small.smpp["p99_ms"], large.smpp["p99_ms"], ",.1f")
    _row("smpp: inbound events committed", small.smpp["committed"], large.smpp["committed"])
    _row("gate single, from PostgreSQL: p50 ms", small.single_cold[0], large.single_cold[0], ",.3f")
    _row("gate single, from PostgreSQL: p99 ms", small.single_cold[1], large.single_cold[1], ",.3f")
    _row("gate single, near cache: p50 ms", small.single_warm[0], large.single_warm[0], ",.3f")
    _row("gate single, near cache: p99 ms", small.single_warm[1], large.single_warm[1], ",.3f")
    _row("batch gate, first call (PostgreSQL) /s", small.batch_pg, large.batch_pg)
    _row("batch gate, from Redis /s", small.batch_redis, large.batch_redis)
    _row("batch gate, near cache /s", small.batch_near, large.batch_near)
    checks = [
        ("smpp replies/s", _rate(small.smpp) / _rate(large.smpp)),
        ("smpp p99", large.smpp["p99_ms"] / small.smpp["p99_ms"]),
        ("gate single p99 (PostgreSQL)", large.single_cold[1] / small.single_cold[1]),
        ("batch gate (PostgreSQL)", small.batch_pg / large.batch_pg),
        ("batch gate (near cache)", small.batch_near / large.batch_near),
    ]
    missed = [name for name, slower in checks if slower > BOUND]
    verdict = "met" if not missed else f"missed by {', '.join(missed)}"
    print(f"acceptance: the large database at most {BOUND}x slower than the small one"
          f" (rates small/large, p99 large/small): {verdict}")  # fmt: skip
    for name, slower in checks:
        print(f"  {name}: {slower:.2f}x")


def main() -> None:
    """Entry point for ``python -m bench``."""
    asyncio.run(run())


if __name__ == "__main__":
    main()
