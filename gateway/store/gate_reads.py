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
    """address -> its consent row for (sender, program, channel); absent: no row."""
    try:
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT c.address, s.state, s.version, s.updated_at"
                "  FROM unnest($1::text[]) AS a(address)"
                "  JOIN contacts c ON c.channel = $2 AND c.address = a.address"
                "  JOIN consent s ON s.contact_id = c.id AND s.channel = $2"
                "   AND s.sender = $3 AND s.program = $4",
                list(addresses),
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
