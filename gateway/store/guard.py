"""Cache guard (I/O layer): decides when the send gate may trust the cache, and repairs it.

The gate trusts the cache only while (a) this instance's last Redis operation succeeded
and (b) the ``cache_repair`` table is empty. A writer that could not put its pre-commit
tombstone into Redis records the key in ``cache_repair`` in the same transaction as the
change and NOTIFYs ``<schema>_cache_repair``; every instance LISTENs, so it sees the
backlog as the change commits (or at its next poll) and reads Postgres until a guard has
re-written those keys from Postgres (compare-and-set by version, so a slow reader
racing the repair cannot win with an older state).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

import asyncpg

from gateway.metrics import Metrics
from gateway.store.cache import CachedConsent, CacheUnavailable, ConsentCache, ConsentKey
from gateway.waiting import wait_event
from keywords.model import ConsentState

log = logging.getLogger(__name__)

_REPAIR_BATCH = 500


class CacheGuard:
    """Tracks cache health for this instance and drains the shared repair backlog."""

    def __init__(
        self,
        cache: ConsentCache,
        pool: asyncpg.Pool,
        *,
        interval: float,
        metrics: Metrics,
        channel: str,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
    ) -> None:
        self._connect = connect
        self._cache = cache
        self.channel = channel
        self._pool = pool
        self._interval = interval
        self._metrics = metrics
        self._cache_ok = False  # proven by the first poll, not assumed
        self._seen_down = False  # a failure since the cache last answered: worth a line
        self._backlog = True
        self._wake = asyncio.Event()

    @property
    def usable(self) -> bool:
        """True when a cached entry may be believed."""
        return self._cache_ok and not self._backlog

    @property
    def cache_reachable(self) -> bool:
        """True while this instance's last cache operation succeeded (backlog or not)."""
        return self._cache_ok

    def report_failure(self, operation: str) -> None:
        """A cache operation failed: read Postgres until the next successful poll."""
        self._metrics.cache_failures.labels(operation).inc()
        if self._cache_ok:
            log.warning("cache unavailable; the gate reads Postgres", extra={"op": operation})
        self._seen_down = True
        self._cache_ok = False
        self._cache.forget_local()
        self._metrics.cache_usable.set(0)
        self._wake.set()

    def distrust(self) -> None:
        """The guard's own task is down: nobody watches Redis, so read Postgres until a
        restarted guard has polled again."""
        self._cache_ok = False
        self._not_usable()
        self._cache.forget_local()

    def report_backlog(self) -> None:
        """This instance just wrote to ``cache_repair``."""
        self._backlog = True
        self._cache.forget_local()
        self._metrics.cache_usable.set(0)
        self._wake.set()

    async def poll_once(self) -> bool:
        """Ping the cache, repair what the backlog holds, and return ``usable``."""
        try:
            await self._cache.ping()
            cache_ok = True
        except CacheUnavailable:
            cache_ok = False
        backlog = await self._repair() if cache_ok else True
        if not cache_ok:
            self._seen_down = True
        elif self._seen_down:
            # Only after a failure: not at start, and never for the in-process cache, whose
            # ping cannot fail (no Redis, nothing was ever unreachable).
            log.info("cache reachable again")
            self._seen_down = False
        self._cache_ok, self._backlog = cache_ok, backlog
        self._metrics.cache_usable.set(1 if self.usable else 0)
        return self.usable

    async def _repair(self) -> bool:
        """Re-write backlog keys from Postgres; return True while a backlog remains."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT r.id, r.channel, r.sender, r.program, c.address,"
                "       s.state, s.version, s.updated_at"
                "  FROM cache_repair r JOIN contacts c ON c.id = r.contact_id"
                "  LEFT JOIN consent s ON s.contact_id = r.contact_id AND s.sender = r.sender"
                "   AND s.program = r.program AND s.channel = r.channel"
                " ORDER BY r.id LIMIT $1",
                _REPAIR_BATCH,
            )
            if not rows:
                return False
            entries = [
                (
                    ConsentKey(r["channel"], r["sender"], r["program"], r["address"]),
                    _entry(r["state"], r["version"], r["updated_at"]),
                )
                for r in rows
            ]
            try:
                # Announce first, so every near cache drops what it holds for these keys.
                await self._cache.tombstone_many([(k, e.version) for k, e in entries])
                await self._cache.put_many(entries)
            except CacheUnavailable:
                return True
            await conn.execute(
                "DELETE FROM cache_repair WHERE id = ANY($1::bigint[])", [r["id"] for r in rows]
            )
            log.info("cache repaired", extra={"keys": len(rows)})
            remaining: bool = await conn.fetchval("SELECT EXISTS (SELECT 1 FROM cache_repair)")
            return remaining

    def _on_notify(self, *_args: object) -> None:
        self.report_backlog()

    async def run(self) -> None:
        """Listen for repair notices and poll until cancelled; wake early after a failure."""
        listener: asyncpg.Connection | None = None
        try:
            while True:
                if listener is None or listener.is_closed():
                    listener = await self._listen()
                await self._poll_loop_once()
        finally:
            if listener is not None:
                listener.terminate()

    async def _listen(self) -> asyncpg.Connection | None:
        """A connection of its own (not the pool's): it must stay open to hear NOTIFY."""
        try:
            conn = await self._connect()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            return None
        try:
            await conn.add_listener(self.channel, self._on_notify)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            conn.terminate()
            return None
        except BaseException:
            conn.terminate()  # cancelled while subscribing: do not leak the connection
            raise
        # Whatever was notified while nobody listened is in the table: look again.
        self.report_backlog()
        return conn

    async def _poll_loop_once(self) -> None:
        self._wake.clear()
        try:
            await self.poll_once()
        except (
            OSError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            asyncpg.InternalClientError,  # a pooled connection the server dropped mid-use
            TimeoutError,
        ):
            # Postgres is down too: the gate's own reads fail closed.
            self._not_usable()
        except Exception as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # A library turned our cancellation into an error: stop, as asked.
                raise asyncio.CancelledError from exc
            # Whatever it was, the guard must outlive it: if this task ended, nobody would
            # repair the backlog or notice Redis come back. Distrust the cache and go on.
            log.exception("cache guard poll failed")
            self._not_usable()
        await wait_event(self._wake, self._interval)

    def _not_usable(self) -> None:
        self._backlog = True
        self._metrics.cache_usable.set(0)


def _entry(state: str | None, version: int | None, updated_at: datetime | None) -> CachedConsent:
    if state is None or version is None:
        return CachedConsent(ConsentState.NONE, 0, None)
    return CachedConsent(
        ConsentState(state), version, updated_at.timestamp() if updated_at else None
    )
