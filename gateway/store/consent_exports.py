"""Lists out and state in (store layer): suppression, opt-out and consent exports, streamed,
and the current states an import compares its rows with.

Exports read through a server-side cursor inside one read-only REPEATABLE READ transaction
and hand rows on in batches, so a list of millions leaves in bounded memory and describes
one moment. Erased contacts ('erased:<id>') and the set-aside case collisions of migration
011 are never listed: an erased address survives only as a keyed hash (GDPR art. 17), which
no ESP could match, so the suppression list reports how many there are instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from gateway.errors import TemporaryFailure
from gateway.store.db import DB_ERRORS
from gateway.store.suppression import suppressed_among

BATCH = 2_000
_LISTED = "c.address NOT LIKE 'erased:%' AND c.address NOT LIKE 'case-collision:%'"

_OPT_OUTS = f"""
SELECT c.address, s.program, s.updated_at AS opted_out_at, l.method, s.last_seq
  FROM consent s
  JOIN contacts c ON c.id = s.contact_id
  JOIN ledger l ON l.seq = s.last_seq
 WHERE s.sender = $1 AND s.channel = $2 AND s.state = 'opted_out' AND s.updated_at >= $3
   AND {_LISTED}
 ORDER BY c.address, s.program
"""

# An address is suppressed for a sender when none of its programs there may be sent to and
# at least one was left (an opt-out, a complaint), or when its mail bounced for good.
_SUPPRESSION = f"""
WITH left_all AS (
    SELECT c.address, max(s.updated_at) AS since,
           (array_agg(l.method ORDER BY s.last_seq DESC))[1] AS last_method
      FROM consent s
      JOIN contacts c ON c.id = s.contact_id
      JOIN ledger l ON l.seq = s.last_seq
     WHERE s.sender = $1 AND s.channel = $2 AND {_LISTED}
     GROUP BY c.id, c.address
    HAVING bool_and(s.state <> 'opted_in') AND bool_or(s.state = 'opted_out')
), bounced AS (
    SELECT u.address, u.last_at AS since FROM undeliverable u WHERE $2 = 'email'
)
SELECT address, string_agg(reason, '+' ORDER BY reason) AS reason, max(since) AS since
  FROM (SELECT address, CASE WHEN last_method = 'complaint' THEN 'complaint'
                            ELSE 'opted_out' END AS reason, since FROM left_all
        UNION ALL SELECT address, 'hard_bounce', since FROM bounced) x
 GROUP BY address HAVING max(since) >= $3
 ORDER BY address
"""

_CONSENT = f"""
SELECT c.address, s.program, s.state, s.updated_at AS since, s.last_seq, l.method,
       l.evidence::text AS evidence
  FROM consent s
  JOIN contacts c ON c.id = s.contact_id
  JOIN ledger l ON l.seq = s.last_seq
 WHERE s.sender = $1 AND s.channel = $2 AND s.updated_at >= $3 AND {_LISTED}
 ORDER BY c.address, s.program
"""

LISTS = {"opt-outs": _OPT_OUTS, "suppression": _SUPPRESSION, "consent": _CONSENT}
COLUMNS = {
    "opt-outs": ("address", "program", "opted_out_at", "method", "last_seq"),
    "suppression": ("address", "reason", "since"),
    "consent": ("address", "program", "state", "since", "last_seq", "method", "evidence"),
}


class ConsentExports:
    """Streams the lists, and reads states for imports."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def erased_entries(self, channel: str) -> int:
        """How many erased people the suppression list holds for ``channel`` (as hashes)."""
        async with self._pool.acquire() as conn:
            value = await conn.fetchval(
                "SELECT count(DISTINCT entry)::int FROM suppression WHERE channel = $1", channel
            )
        return int(value or 0)

    async def stream(
        self, kind: str, sender: str, channel: str, since: datetime
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Batches of rows of list ``kind`` (``LISTS``), in address order."""
        sql = LISTS[kind]
        try:
            async with (
                self._pool.acquire() as conn,
                conn.transaction(isolation="repeatable_read", readonly=True),
            ):
                cursor = await conn.cursor(sql, sender, channel, since)
                while rows := await cursor.fetch(BATCH):
                    yield [dict(r) for r in rows]
        except DB_ERRORS as exc:
            raise TemporaryFailure("the consent store is unavailable") from exc

    async def suppressed(
        self, channel: str, digests: Sequence[Sequence[tuple[str, bytes]]]
    ) -> set[int]:
        """Which addresses (each given by its hashes under every key) are on the list."""
        probes = [(channel, d, i) for i, forms in enumerate(digests) for _, d in forms]
        if not probes:
            return set()
        async with self._pool.acquire() as conn:
            return await suppressed_among(conn, probes)

    async def states(
        self, channel: str, sender: str, program: str, addresses: Sequence[str]
    ) -> dict[str, tuple[str, datetime]]:
        """address -> (state, since) for one program, for the addresses that have a row."""
        async with self._pool.acquire() as conn:
            # One index probe per address (LATERAL ... OFFSET 0), whatever plan the statement
            # was prepared with: a join planned while the tables were small becomes a scan of
            # millions of rows per chunk (tests/store/test_store_plans.py tells the story).
            rows = await conn.fetch(
                "SELECT a.address, k.state, k.updated_at FROM unnest($1::text[]) AS a(address)"
                " CROSS JOIN LATERAL (SELECT s.state, s.updated_at FROM contacts c"
                " JOIN consent s ON s.contact_id = c.id AND s.channel = $2 AND s.sender = $3"
                " AND s.program = $4 WHERE c.channel = $2 AND c.address = a.address OFFSET 0) k",
                list(addresses),
                channel,
                sender,
                program,
            )
        return {r["address"]: (r["state"], r["updated_at"]) for r in rows}
