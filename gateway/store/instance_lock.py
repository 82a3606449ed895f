"""Instance lock (store layer): at most one instance per schema runs without Redis.

Without ``GATEWAY_REDIS_URL`` the consent cache lives in the process, and nothing tells one
process that another committed an opt-out: a second instance on the same schema would
answer its gate from a stale copy (an opt-out taken by one was still ``allowed: opted_in``
at the other 14 s later). So every instance holds a PostgreSQL session-level advisory lock
on its schema for as long as it runs: an instance without Redis holds it exclusively, one
with Redis holds it shared. A second instance that cannot take its lock refuses to start
with a message that says why (``ConfigError``): two instances without Redis, or one with and
one without, never run on one schema.

The lock lives on a connection of its own. If that connection is lost (a database restart),
``keep`` takes the lock again on a new one; if another instance took it meanwhile, this one
can no longer be sure it is alone, and ``keep`` raises ``LockLost`` for the supervisor to end
the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from gateway.errors import ConfigError
from gateway.store.db import DB_ERRORS

log = logging.getLogger(__name__)

# The first key of the two-key advisory lock: any number no other part of the gateway uses
# (the migration lock is a one-key lock, another key space).
_LOCK_CLASS = 0x63670001


class LockLost(Exception):
    """Another instance took the lock while this one had lost its connection."""


class InstanceLock:
    """The schema's advisory lock, exclusive without Redis, shared with it."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        schema: str,
        *,
        shared: bool,
        check_seconds: float = 5.0,
    ) -> None:
        self._connect = connect
        self._schema = schema
        self._shared = shared
        self._check = check_seconds
        self._conn: asyncpg.Connection | None = None

    async def _take(self, conn: asyncpg.Connection) -> bool:
        function = "pg_try_advisory_lock_shared" if self._shared else "pg_try_advisory_lock"
        taken: bool = await conn.fetchval(
            f"SELECT {function}($1, hashtext($2))",  # one of two fixed names, never input
            _LOCK_CLASS,
            self._schema,
        )
        return taken

    async def acquire(self) -> None:
        """Take the lock or raise ``ConfigError`` saying which kind of instance holds it."""
        conn = await self._connect()
        try:
            taken = await self._take(conn)
        except BaseException:
            conn.terminate()
            raise
        if not taken:
            await conn.close()
            if self._shared:
                raise ConfigError(
                    f"an instance without GATEWAY_REDIS_URL is running on schema"
                    f" {self._schema!r} of this database; it keeps its consent cache in its"
                    " own memory, so no other instance may share the schema: stop it, or run"
                    " every instance with the same GATEWAY_REDIS_URL"
                )
            raise ConfigError(
                f"another gateway instance is running on schema {self._schema!r} of this"
                " database; without GATEWAY_REDIS_URL only one instance may use a schema (a"
                " second would answer its gate from a stale in-process cache): stop it, or"
                " run every instance with the same GATEWAY_REDIS_URL"
            )
        self._conn = conn

    async def keep(self) -> None:
        """Hold the lock until cancelled; take it again after a lost connection."""
        while True:
            await asyncio.sleep(self._check)  # a health check timer, not a synchronization
            conn = self._conn
            try:
                if conn is not None and not conn.is_closed():
                    await conn.fetchval("SELECT 1", timeout=self._check)
                    continue
            except DB_ERRORS:
                pass
            if conn is not None:
                conn.terminate()
            self._conn = None
            try:
                fresh = await self._connect()
            except DB_ERRORS:
                log.warning("instance lock: database unavailable; retrying")
                continue
            try:
                taken = await self._take(fresh)
            except DB_ERRORS:
                fresh.terminate()
                continue
            if not taken:
                await fresh.close()
                raise LockLost(f"another instance took the lock on schema {self._schema!r}")
            self._conn = fresh
            log.info("instance lock taken again after a lost connection")

    async def release(self) -> None:
        """Close the lock's connection (PostgreSQL releases a session lock with it)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(*DB_ERRORS):
                await conn.close()
