"""The writer's reads stay index probes under a plan made while the tables were empty.

A prepared statement's generic plan is made once and kept until the tables are analyzed.
Made on a new schema, a join over ``unnest`` came out as a hash join over a sequential scan
of ``consent`` (and of every queued ``outbox`` row): each batch then read whole tables, and
slower as they grew (bench/run_email.py found it). The LATERAL probes must not depend on
statistics.
"""

from __future__ import annotations

import json
import re
from typing import Any

import asyncpg

from gateway.app import Gateway
from gateway.store.statements import RECORD_INBOUND


def _scans(node: dict[str, Any]) -> list[tuple[str, str]]:
    found = []
    if "Relation Name" in node:
        found.append((node["Node Type"], node["Relation Name"]))
    for child in node.get("Plans", []):
        found.extend(_scans(child))
    return found


async def test_record_inbound_probes_consent_and_outbox_by_index_under_a_generic_plan(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """Planned on empty tables (no statistics), consent and outbox are reached by index only."""
    await db.execute("SET plan_cache_mode = force_generic_plan")
    await db.execute(f"PREPARE record_inbound AS {RECORD_INBOUND}")
    casts = re.findall(r"\$\d+::(\w+\[\])", RECORD_INBOUND)
    args = ", ".join(f"'{{}}'::{cast}" for cast in casts)
    plan = json.loads(await db.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE record_inbound({args})"))

    scans = _scans(plan[0]["Plan"])
    assert {"consent", "outbox"} <= {relation for _, relation in scans}
    for node_type, relation in scans:
        if relation in ("consent", "outbox"):
            assert node_type in ("Index Scan", "Index Only Scan"), (node_type, relation)
