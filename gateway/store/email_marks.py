"""Email marks (store layer): hard-bounced addresses and individually revoked tokens.

Neither is a consent change, so neither goes through the ledger: a bounce withdraws nothing
and a revoked link is an operator's act on a URL, not a subscriber's choice. Database errors
become ``TemporaryFailure`` so the SMTP edge answers 451 and the HTTP edge 503 (docs/DESIGN.md,
invariant 1).
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg

from gateway.addresses import normalize_email
from gateway.errors import InvalidAddress, TemporaryFailure
from gateway.store.db import connection


class EmailMarks:
    """Reads and writes ``undeliverable`` and ``revoked_tokens`` (migration 003).

    Revoked fingerprints are also held in memory and reloaded every ``refresh_seconds``, so
    a one-click request costs no database round trip before its commit; a revocation made on
    another instance takes effect here within that interval, one made here at once.
    """

    def __init__(self, pool: asyncpg.Pool, *, refresh_seconds: float = 2.0) -> None:
        self._pool = pool
        self._refresh = refresh_seconds
        self._revoked: frozenset[str] = frozenset()

    async def reload(self) -> None:
        """Load every revoked fingerprint (raises ``TemporaryFailure`` if Postgres is down)."""
        async with connection(self._pool) as conn:
            rows = await conn.fetch("SELECT fingerprint FROM revoked_tokens")
        self._revoked = frozenset(r["fingerprint"] for r in rows)

    async def run(self) -> None:
        """Reload until cancelled; an unreachable database keeps the last known set."""
        while True:
            with contextlib.suppress(TemporaryFailure):
                await self.reload()
            await asyncio.sleep(self._refresh)

    async def is_revoked(self, fingerprint: str) -> bool:
        """True if this token was revoked on its own (from the in-memory set)."""
        return fingerprint in self._revoked

    async def revoke(self, fingerprint: str, reason: str) -> None:
        """Revoke one token (idempotent)."""
        async with connection(self._pool) as conn:
            await conn.execute(
                "INSERT INTO revoked_tokens (fingerprint, reason) VALUES ($1, $2)"
                " ON CONFLICT (fingerprint) DO NOTHING",
                fingerprint,
                reason,
            )
        self._revoked = self._revoked | {fingerprint}

    async def mark_undeliverable(
        self, address: str, list_id: str | None, status: str, diagnostic: str, dsn_key: str
    ) -> None:
        """Record a permanent failure; the same DSN delivered twice counts once.

        Keyed as contacts are (gateway/addresses.py), so export and erasure find it.
        """
        try:
            address = normalize_email(address)
        except InvalidAddress:
            address = address.strip().lower()  # still recorded: a DSN may name odd addresses
        async with connection(self._pool) as conn:
            await conn.execute(
                "INSERT INTO undeliverable (address, list_id, status, diagnostic, dsn_key)"
                " VALUES ($1, $2, $3, $4, $5)"
                " ON CONFLICT (address) DO UPDATE SET"
                " list_id = COALESCE(EXCLUDED.list_id, undeliverable.list_id),"
                " status = EXCLUDED.status, diagnostic = EXCLUDED.diagnostic,"
                " dsn_key = EXCLUDED.dsn_key, bounces = undeliverable.bounces + 1,"
                " last_at = now() WHERE undeliverable.dsn_key <> EXCLUDED.dsn_key",
                address,
                list_id,
                status,
                diagnostic,
                dsn_key,
            )

    async def is_undeliverable(self, address: str) -> bool:
        """True if mail to ``address`` hard-bounced."""
        async with connection(self._pool) as conn:
            found = await conn.fetchval("SELECT 1 FROM undeliverable WHERE address = $1", address)
        return found is not None
