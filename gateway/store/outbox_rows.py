"""The ``outbox`` table as the outbox worker uses it: claim, mark sent, fail, backlog.

Rows are inserted by the consent writer (gateway/store/writer.py) in the transaction of the
change they confirm, and by the privacy and send paths; this module leases and settles them.
A claim is one ``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)``, so any number
of instances can claim at once without taking the same row; a lease that runs out (a process
died mid-send) makes the row claimable again: delivery is at least once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg


class OutboxRows:
    """Leases, settles and counts outbox rows."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def bring_forward(self, channels: Sequence[str]) -> None:
        """Make the queued rows of ``channels`` due now (their peer is back)."""
        async with self._pool.acquire() as conn:
            await conn.execute(
                "UPDATE outbox SET next_attempt_at = now() WHERE status = 'queued'"
                " AND channel = ANY($1::text[]) AND next_attempt_at > now()",
                list(channels),
            )

    async def claim(
        self, channels: Sequence[str], limit: int, lease_seconds: float
    ) -> list[dict[str, Any]]:
        """Lease up to ``limit`` due rows of ``channels``: the fields of ``OutboxRow``."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "UPDATE outbox SET status = 'sending', attempts = attempts + 1,"
                " next_attempt_at = now() + make_interval(secs => $3)"
                " WHERE id IN (SELECT id FROM outbox"
                "   WHERE status IN ('queued', 'sending') AND next_attempt_at <= now()"
                "     AND channel = ANY($1::text[])"
                "   ORDER BY next_attempt_at, id LIMIT $2 FOR UPDATE SKIP LOCKED)"
                " RETURNING id, channel, sender, program, recipient, kind, language, body,"
                " attempts",
                list(channels),
                limit,
                lease_seconds,
            )
        return [dict(r) for r in rows]

    async def mark_sent(self, ids: Sequence[int], refs: Sequence[str | None]) -> None:
        """Record a batch as sent, with each provider's reference.

        One statement per batch: a connection and a commit per row starved the consent
        writer of pool connections under load (bench/run_smpp.py).
        """
        async with self._pool.acquire() as conn:
            await conn.execute(
                "UPDATE outbox o SET status = 'sent', sent_at = now(), provider_ref = u.ref,"
                " last_error = NULL FROM unnest($1::bigint[], $2::text[]) AS u(id, ref)"
                " WHERE o.id = u.id",
                list(ids),
                list(refs),
            )

    async def failed(
        self, row_id: int, *, final: bool, error: str, retry_in: float, attempted: bool = True
    ) -> None:
        """Record a failed send: ``failed`` for good, or queued again in ``retry_in`` s.

        ``attempted=False`` (nothing reached a peer) takes back the claim's increment.
        """
        async with self._pool.acquire() as conn:
            await conn.execute(
                # Only while still leased: an opt-out meanwhile cancelled the row, and a
                # cancelled reply must stay unsent (docs/DESIGN.md, invariant 2).
                "UPDATE outbox SET status = $2, last_error = $3,"
                " next_attempt_at = now() + make_interval(secs => $4),"
                " attempts = attempts - CASE WHEN $5 THEN 0 ELSE 1 END"
                " WHERE id = $1 AND status = 'sending'",
                row_id,
                "failed" if final else "queued",
                error,
                retry_in,
                attempted,
            )

    async def backlog(self) -> dict[tuple[str, str], tuple[int, float]]:
        """(channel, kind) -> (rows queued or being sent, age in seconds of the oldest)."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT channel, kind, count(*) AS n,"
                " extract(epoch FROM now() - min(created_at))::float8 AS age"
                " FROM outbox WHERE status IN ('queued', 'sending') GROUP BY channel, kind"
            )
        return {(r["channel"], r["kind"]): (int(r["n"]), float(r["age"])) for r in rows}

    async def oldest_waiting_age(self, kind: str) -> float:
        """Seconds the oldest unsent row of ``kind`` has waited (0 when none waits)."""
        async with self._pool.acquire() as conn:
            age = await conn.fetchval(
                "SELECT extract(epoch FROM now() - min(created_at))::float8 FROM outbox"
                " WHERE status IN ('queued', 'sending') AND kind = $1",
                kind,
            )
        return 0.0 if age is None else float(age)
