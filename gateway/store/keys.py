"""The ``api_keys`` table: keys are created, verified (hashed, remembered briefly) and revoked.

A key is ``cgk_<id>_<secret>``; only its SHA-256 is stored, so a database dump cannot be used
to call the API. A revocation is announced with ``NOTIFY <schema>_api, 'keys'`` in its own
transaction (gateway/store/change_feed.py), so every instance forgets the key at once, and
within ``_KEY_CACHE_SECONDS`` even if that notice was lost.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from gateway.errors import TemporaryFailure
from gateway.store.audit_log import write_audit

SCOPES = ("read", "write", "send", "admin")
_KEY_PREFIX = "cgk"
# A verified key is remembered this long; a revocation reaches other instances at once by
# NOTIFY, and within this bound even if that notice was lost.
_KEY_CACHE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key's public part and what it may do (the secret is never kept)."""

    id: str
    name: str
    scopes: frozenset[str]


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class ApiKeys:
    """Create, verify, list and revoke API keys; one per gateway instance."""

    def __init__(self, pool: asyncpg.Pool, *, channel: str) -> None:
        self._pool = pool
        self.channel = channel  # the NOTIFY channel of this schema
        self._verified: dict[bytes, tuple[ApiKey | None, float]] = {}
        self._inflight: dict[bytes, asyncio.Future[ApiKey | None]] = {}

    async def create_key(self, name: str, scopes: Sequence[str], *, actor: str) -> tuple[str, str]:
        """A new key; returns (id, the full key). The full key is shown once and never stored."""
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown or not scopes:
            raise ValueError(f"scopes must be a non-empty subset of {', '.join(SCOPES)}")
        key_id = secrets.token_hex(4)
        full = f"{_KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO api_keys (id, key_sha256, name, scopes) VALUES ($1, $2, $3, $4)",
                key_id,
                _digest(full),
                name,
                sorted(set(scopes)),
            )
            await write_audit(conn, actor, "key.create", key_id, {"name": name, "scopes": scopes})
        return key_id, full

    async def revoke_key(self, key_id: str, *, actor: str) -> bool:
        """Revoke ``key_id``; every instance forgets it (NOTIFY). False if there is no such key."""
        async with self._pool.acquire() as conn, conn.transaction():
            done = await conn.fetchval(
                "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL"
                " RETURNING id",
                key_id,
            )
            if done is None:
                return False
            await write_audit(conn, actor, "key.revoke", key_id, {})
            await conn.execute("SELECT pg_notify($1, 'keys')", self.channel)
        self.forget_keys()
        return True

    async def live_keys_named(self, name: str) -> list[str]:
        """Ids of the keys not revoked that carry ``name``, oldest first."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT id FROM api_keys WHERE name = $1 AND revoked_at IS NULL"
                " ORDER BY created_at",
                name,
            )
        return [r["id"] for r in rows]

    async def list_keys(self) -> list[dict[str, Any]]:
        """Every key's public fields, with its last use (to the minute; None: never used)."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT id, name, scopes, created_at, revoked_at, last_used_at FROM api_keys"
                " ORDER BY created_at"
            )
        return [
            {
                "id": r["id"],
                "name": r["name"],
                "scopes": list(r["scopes"]),
                "created_at": r["created_at"].isoformat(),
                "revoked_at": r["revoked_at"].isoformat() if r["revoked_at"] else None,
                "last_used_at": r["last_used_at"].isoformat() if r["last_used_at"] else None,
            }
            for r in rows
        ]

    async def authenticate(self, key: str) -> ApiKey | None:
        """The live key ``key`` is, or None (unknown or revoked)."""
        digest = _digest(key)
        now = time.monotonic()
        hit = self._verified.get(digest)
        if hit is not None and hit[1] > now:
            return hit[0]
        # Single flight: when the remembered answer expires under load, hundreds of requests
        # with the same key arrive at once; one query answers them all (no pool stampede).
        pending = self._inflight.get(digest)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[ApiKey | None] = asyncio.get_running_loop().create_future()
        self._inflight[digest] = future
        try:
            found = await self._lookup(digest)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # marked retrieved: waiters re-raise it, nobody else must
            raise
        else:
            future.set_result(found)
        finally:
            del self._inflight[digest]
        if len(self._verified) > 10_000:
            self._verified.clear()  # bounded: unknown keys must not grow memory without end
        self._verified[digest] = (found, now + _KEY_CACHE_SECONDS)
        return found

    async def _lookup(self, digest: bytes) -> ApiKey | None:
        try:
            async with self._pool.acquire() as conn:
                # The use is recorded in the same round trip (migration 017), and written
                # only when the recorded one is over a minute old, whichever instance wrote
                # it: `keys list` shows the last use to the minute, for at most one write
                # a minute per key rather than one per request.
                row = await conn.fetchrow(
                    "WITH k AS (SELECT id, name, scopes, last_used_at FROM api_keys"
                    "  WHERE key_sha256 = $1 AND revoked_at IS NULL),"
                    " used AS (UPDATE api_keys a SET last_used_at = now() FROM k"
                    "  WHERE a.id = k.id AND (k.last_used_at IS NULL"
                    "   OR k.last_used_at < now() - interval '1 minute'))"
                    " SELECT id, name, scopes FROM k",
                    digest,
                )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise TemporaryFailure("key store unavailable") from exc
        return None if row is None else ApiKey(row["id"], row["name"], frozenset(row["scopes"]))

    def forget_keys(self) -> None:
        """Drop remembered verifications (a key was revoked somewhere)."""
        self._verified.clear()
