"""The store's reads stay index probes: under a plan made while the tables were empty, and
when a batch is large next to the table.

PL/pgSQL and prepared statements keep generic plans, made once and kept until the tables are
analyzed. Made on a new schema, a join over ``unnest`` came out as a hash join over a
sequential scan of ``consent`` (and of every queued ``outbox`` row): each batch then read
whole tables, slower as they grew (bench/run_email.py found it). The LATERAL probes in
``writer_record`` (migrations 006 and 008) must not depend on statistics.

The gate's read of many addresses and the expired double opt-in sweep must not scan whole
tables either (docs/benchmarks.md, "The size of the data again"): at 10^7 contacts a hash
join over ``contacts`` took seconds, and the sweep read all of ``consent`` every minute.

The plans are read with ``auto_explain`` (a contrib module shipped with PostgreSQL), sent to
this connection as notices.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from gateway.app import Gateway
from gateway.store.gate_reads import consent_states


def _scans(node: dict[str, Any]) -> list[tuple[str, str]]:
    found = []
    if "Relation Name" in node:
        found.append((node["Node Type"], node["Relation Name"]))
    for child in node.get("Plans", []):
        found.extend(_scans(child))
    return found


def _nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(n for child in node.get("Plans", []) for n in _nodes(child))]


async def _explained(db: asyncpg.Connection, *settings: str) -> list[dict[str, Any]]:
    """Every plan ``db`` runs from now on, appended to the returned list as it runs."""
    plans: list[dict[str, Any]] = []

    def collect(_conn: object, message: asyncpg.PostgresLogMessage) -> None:
        text = message.message
        if text.startswith("duration:") and "{" in text:
            plans.append(json.loads(text[text.index("{") :]))

    db.add_log_listener(collect)
    for setting in (
        "LOAD 'auto_explain'",
        "SET auto_explain.log_min_duration = 0",
        "SET auto_explain.log_nested_statements = on",
        "SET auto_explain.log_format = 'json'",
        "SET auto_explain.log_level = 'notice'",
        *settings,
    ):
        await db.execute(setting)
    return plans


class _OneConnection:
    """A stand-in for the pool that lends the store this test's connection (its settings and
    its plans), so the store's own statement is what gets explained."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        yield self._conn


async def test_writer_record_probes_consent_and_outbox_by_index_under_generic_plans(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """Planned on empty tables (no statistics), consent and outbox are reached by index only."""
    plans = await _explained(db, "SET plan_cache_mode = force_generic_plan")
    await db.execute(
        "SELECT * FROM writer_record(ARRAY[ROW('sms', '+14155550123')::writer_contact_row],"
        " ARRAY[ROW('k1', 'sms', '+14155550123', '12345', 'sms_keyword', now(), NULL, 'opt_out',"
        " 'exact', false, 'STOP', '{}')::writer_inbound_row])"
    )

    scans = [scan for plan in plans for scan in _scans(plan["Plan"])]
    assert {"consent", "outbox", "contacts", "inbound_events"} <= {rel for _, rel in scans}
    for node_type, relation in scans:
        if relation in ("consent", "outbox"):
            assert node_type in ("Index Scan", "Index Only Scan"), (node_type, relation)


async def test_the_previous_releases_writer_record_still_answers(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """During a rolling upgrade an instance of the previous release calls 006's signature."""
    rows = await db.fetch(
        "SELECT kind FROM writer_record(ARRAY['sms'], ARRAY['+14155550199'], ARRAY['k-old'],"
        " ARRAY['sms'], ARRAY['+14155550199'], ARRAY['12345'], ARRAY['sms_keyword'],"
        " ARRAY[now()], ARRAY[NULL::timestamptz], ARRAY['opt_out'], ARRAY['exact'],"
        " ARRAY[false], ARRAY['STOP'], ARRAY['{}'])"
    )
    assert ["c", "i"] == sorted(r["kind"] for r in rows)


async def _opted_in(db: asyncpg.Connection, count: int) -> list[str]:
    numbers = [f"+1415{n:07d}" for n in range(count)]
    await db.execute(
        "INSERT INTO contacts (channel, address) SELECT 'sms', a FROM unnest($1::text[]) a",
        numbers,
    )
    await db.execute(
        "INSERT INTO consent (contact_id, sender, program, channel, state, version,"
        " updated_at, last_seq) SELECT id, '12345', 'reminders', 'sms', 'opted_in', 1, now(), 0"
        " FROM contacts"
    )
    await db.execute("ANALYZE contacts")
    await db.execute("ANALYZE consent")
    return numbers


async def test_the_gate_reads_a_large_batch_by_one_probe_per_number(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """4,000 numbers among 6,000 contacts, statistics fresh: a plain join of the batch with
    ``contacts`` is planned as a hash join that reads the whole table (and did, at 10^7
    rows). The gate's read is a nested loop of index probes, with no hash anywhere."""
    numbers = await _opted_in(db, 6_000)
    plans = await _explained(db)
    found = await consent_states(
        _OneConnection(db),  # type: ignore[arg-type]
        "sms", "12345", "reminders", numbers[1_000:5_000],
    )  # fmt: skip
    assert 4_000 == len(found)
    nodes = [n for plan in plans for n in _nodes(plan["Plan"])]
    assert not [n["Node Type"] for n in nodes if "Hash" in n["Node Type"]]
    scans = {n["Relation Name"]: n["Node Type"] for n in nodes if "Relation Name" in n}
    assert {"contacts", "consent"} == set(scans)
    assert {"Index Scan", "Index Only Scan"} >= set(scans.values()), scans


async def test_the_expired_double_opt_in_sweep_reads_the_pending_rows_index(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """The sweep asks every minute for pending rows past the confirm window. It is served by
    the partial index of pending rows (migration 008), so its cost follows the handful
    waiting for confirmation, not every consent row. Sequential scans are priced out here,
    as the test's tables are too small for the planner to prefer any index on its own."""
    await _opted_in(db, 2_000)
    await db.execute(
        "UPDATE consent SET state = 'pending', updated_at = now() - interval '3 days'"
        " WHERE contact_id IN (SELECT id FROM contacts ORDER BY id LIMIT 3)"
    )
    plans = await _explained(db, "SET enable_seqscan = off")
    privacy = gateway.api.privacy
    pool, privacy._pool = privacy._pool, _OneConnection(db)  # type: ignore[assignment]
    try:
        rows = await privacy.expired_pending(86_400, 500)
    finally:
        privacy._pool = pool
    assert 3 == len(rows)
    nodes = [n for plan in plans for n in _nodes(plan["Plan"])]
    consent_scans = [n for n in nodes if n.get("Relation Name") == "consent"]
    assert [("Index Scan", "consent_pending_since")] == [
        (n["Node Type"], n.get("Index Name")) for n in consent_scans
    ]
