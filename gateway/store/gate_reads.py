"""The send gate's reads from PostgreSQL: consent states of many addresses in one round trip.

The gate asks here when the caches cannot answer (a miss, a tombstone, a cache it does not
trust: docs/DESIGN.md, invariant 2); what it reads it writes back to the cache itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from gateway.errors import TemporaryFailure
from gateway.store.cache import CachedConsent
from gateway.store.db import DB_ERRORS
from keywords.model import ConsentState


async def consent_states(
    pool: asyncpg.Pool, channel: str, sender: str, program: str, addresses: Sequence[str]
) -> dict[str, CachedConsent]:
    """address -> its consent row for (sender, program, channel); absent: no row.

    Each address is two index probes (contacts by address, then consent by key), whatever
    the size of the tables: the LATERAL subquery with LIMIT 1 keeps the planner from the
    hash join it picks for a plain join once a batch is large, which reads and hashes the
    whole contacts table (1.7 s for 100,000 addresses among 3.1 million contacts on
    2026-12-03, growing with the table; docs/benchmarks.md, "Cost against the size of the
    data"). The addresses go in sorted, so consecutive probes walk neighbouring index pages.
    """
    try:
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT a.address, r.state, r.version, r.updated_at"
                "  FROM unnest($1::text[]) AS a(address)"
                "  CROSS JOIN LATERAL (SELECT s.state, s.version, s.updated_at"
                "    FROM contacts c JOIN consent s ON s.contact_id = c.id AND s.channel = $2"
                "     AND s.sender = $3 AND s.program = $4"
                "    WHERE c.channel = $2 AND c.address = a.address LIMIT 1) AS r",
                sorted(addresses),
                channel,
                sender,
                program,
            )
    except DB_ERRORS as exc:
        raise TemporaryFailure("consent store unavailable") from exc
    return {
        r["address"]: CachedConsent(
            ConsentState(r["state"]), r["version"], r["updated_at"].timestamp()
        )
        for r in rows
    }
