"""API state in Postgres (store layer): API keys, the admin audit log, sender overrides, and the
change feed that tells every instance about them without a restart.

Changes are announced with ``NOTIFY <schema>_api, '<topic>'`` in the same transaction that
makes them, so a listener hears only committed changes; each instance keeps one connection
LISTENing and, after any reconnect, reloads everything (a notice sent while nobody listened is
otherwise lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from gateway.errors import TemporaryFailure


async def write_audit(
    conn: Any, actor: str, action: str, target: str, detail: Mapping[str, Any]
) -> None:
    """One row of the operators' audit log, in the caller's transaction."""
    await conn.execute(
        "INSERT INTO admin_audit (actor, action, target, detail) VALUES ($1, $2, $3, $4)",
        actor,
        action,
        target,
        json.dumps(detail),
    )


log = logging.getLogger(__name__)

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


class ApiStore:
    """Keys, audit records and sender overrides; one per gateway instance."""

    def __init__(self, pool: asyncpg.Pool, *, channel: str) -> None:
        self._pool = pool
        self.channel = channel  # the NOTIFY channel of this schema
        self._verified: dict[bytes, tuple[ApiKey | None, float]] = {}
        self._inflight: dict[bytes, asyncio.Future[ApiKey | None]] = {}

    # -- API keys ----------------------------------------------------------------------------

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
            await self._audit(conn, actor, "key.create", key_id, {"name": name, "scopes": scopes})
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
            await self._audit(conn, actor, "key.revoke", key_id, {})
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

    # -- audit and sender overrides ---------------------------------------------------------

    _audit = staticmethod(write_audit)

    async def audit(self, actor: str, action: str, target: str, detail: Mapping[str, Any]) -> None:
        """Record one operator action on its own."""
        async with self._pool.acquire() as conn:
            await self._audit(conn, actor, action, target, detail)

    async def audit_log(self, limit: int) -> list[dict[str, Any]]:
        """The newest audit records first."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT id, at, actor, action, target, detail FROM admin_audit"
                " ORDER BY id DESC LIMIT $1",
                limit,
            )
        return [
            {
                "id": r["id"],
                "at": r["at"].isoformat(),
                "actor": r["actor"],
                "action": r["action"],
                "target": r["target"],
                "detail": json.loads(r["detail"]),
            }
            for r in rows
        ]

    async def save_sender(self, sender: str, definition: Mapping[str, Any], *, actor: str) -> int:
        """Store a validated sender definition, audit it and announce it; return its revision."""
        async with self._pool.acquire() as conn, conn.transaction():
            revision: int = await conn.fetchval(
                "INSERT INTO sender_overrides (sender, definition, revision, updated_by)"
                " VALUES ($1, $2, 1, $3) ON CONFLICT (sender) DO UPDATE SET"
                " definition = EXCLUDED.definition, revision = sender_overrides.revision + 1,"
                " updated_at = now(), updated_by = EXCLUDED.updated_by RETURNING revision",
                sender,
                json.dumps(definition),
                actor,
            )
            await self._audit(
                conn,
                actor,
                "sender.update",
                sender,
                {"revision": revision, "definition": definition},
            )
            await conn.execute("SELECT pg_notify($1, 'senders')", self.channel)
        return revision

    async def sender_overrides(self) -> dict[str, dict[str, Any]]:
        """Every stored sender definition, by sender."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch("SELECT sender, definition FROM sender_overrides")
        return {r["sender"]: json.loads(r["definition"]) for r in rows}


Listener = Callable[[str], Awaitable[None]]


class ChangeFeed:
    """LISTENs on the schema's API channel and hands each topic to ``on_change``."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        channel: str,
        on_change: Listener,
        *,
        retry_seconds: float = 1.0,
    ) -> None:
        self._connect = connect
        self._channel = channel
        self._on_change = on_change
        self._retry = retry_seconds
        self._topics: asyncio.Queue[str] = asyncio.Queue()

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        self._topics.put_nowait(str(payload))

    async def run(self) -> None:
        """Listen until cancelled; reconnect and reload everything after a lost connection."""
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await self._connect()
                await conn.add_listener(self._channel, self._notified)
                await self._on_change("*")  # whatever changed while nobody listened
                while not conn.is_closed():
                    with contextlib.suppress(TimeoutError):
                        topic = await asyncio.wait_for(self._topics.get(), self._retry)
                        await self._on_change(topic)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                log.warning("change feed: database unavailable; retrying")
            finally:
                if conn is not None:
                    conn.terminate()
            await asyncio.sleep(self._retry)  # back off before reconnecting (not a sync point)
