"""The writer's reads stay index probes under a plan made while the tables were empty.

PL/pgSQL and prepared statements keep generic plans, made once and kept until the tables are
analyzed. Made on a new schema, a join over ``unnest`` came out as a hash join over a
sequential scan of ``consent`` (and of every queued ``outbox`` row): each batch then read
whole tables, slower as they grew (bench/run_email.py found it). The LATERAL probes in
``writer_record`` (migrations 006 and 008) must not depend on statistics.

The plans are read with ``auto_explain`` (a contrib module shipped with PostgreSQL), sent to
this session as notices.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from gateway.app import Gateway


def _scans(node: dict[str, Any]) -> list[tuple[str, str]]:
    found = []
    if "Relation Name" in node:
        found.append((node["Node Type"], node["Relation Name"]))
    for child in node.get("Plans", []):
        found.extend(_scans(child))
    return found


async def test_writer_record_probes_consent_and_outbox_by_index_under_generic_plans(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """Planned on empty tables (no statistics), consent and outbox are reached by index only."""
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
        "SET plan_cache_mode = force_generic_plan",
    ):
        await db.execute(setting)
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
