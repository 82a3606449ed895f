"""Telling the consent cache about a change (I/O layer): the one path the writer and rectify use.

The rule is cache.py's: a change to consent rows is announced to the cache as *tombstones*
carrying the new versions before the transaction commits, and the committed states are
written over them after it. Whatever fails leaves a tombstone or nothing, and both send the
gate to Postgres (docs/DESIGN.md, invariant 2). The order is:

1. ``Invalidation`` sends the tombstones as soon as the new versions are known (the
   writer overlaps the call with its own statements); none is sent while the guard knows
   Redis is down;
2. ``complete``, after the transaction's writes and before COMMIT, waits for them. If
   Redis did not take them, the keys go to ``cache_repair`` in the same transaction and a
   NOTIFY makes every instance read Postgres until a guard has re-written them (guard.py).
   A caller whose keys a repair row cannot name gets ``CacheUnavailable`` instead and must
   roll back: a rectification tombstones the *old* address's keys, and a repair row names
   a contact, whose address is by then the new one, so the old key would stay stale;
3. ``fill``, after COMMIT, writes the committed states (compare-and-set by version, so
   they replace their own tombstones and nothing newer).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

from gateway.store.cache import CachedConsent, CacheUnavailable, ConsentCache, ConsentKey
from gateway.store.guard import CacheGuard

if TYPE_CHECKING:
    from gateway.store.db import Connection
    from gateway.store.statements import KeyState


class Invalidation:
    """One transaction's tombstones, on their way to the cache."""

    __slots__ = ("_guard", "_taken", "_task")

    def __init__(
        self,
        cache: ConsentCache,
        guard: CacheGuard,
        entries: Sequence[tuple[ConsentKey, int]],
        settled: Sequence[tuple[ConsentKey, CachedConsent]] = (),
    ) -> None:
        """Send the tombstones (``entries``: key and new version) now, with ``settled``
        states committed earlier in the same call (cache.py, ``tombstone_many``)."""
        self._guard = guard
        self._taken: bool | None = None if entries else True  # nothing to tell: told
        self._task: asyncio.Task[None] | None = None
        if entries and guard.cache_reachable:
            self._task = asyncio.create_task(cache.tombstone_many(entries, settled))

    @property
    def sent(self) -> bool:
        """True if the call went out (and so took ``settled`` with it)."""
        return self._task is not None

    async def wait(self) -> bool:
        """Wait for the tombstones; False if Redis did not take them. Safe to call again."""
        if self._taken is None:
            self._taken = await self._wait()
        return self._taken

    async def _wait(self) -> bool:
        if self._task is None:
            return False
        try:
            await self._task
        except CacheUnavailable:
            self._guard.report_failure("tombstone")
            return False
        return True

    async def complete(self, conn: Connection, repair: Collection[KeyState] | None) -> None:
        """Before COMMIT: the tombstones are in Redis, or ``repair`` names the keys in
        ``cache_repair`` in ``conn``'s transaction; with ``repair`` None, raise
        ``CacheUnavailable`` (the caller rolls back)."""
        if await self.wait():
            return
        if repair is None:
            raise CacheUnavailable("the cache did not take the tombstones")
        await conn.executemany(
            "INSERT INTO cache_repair (contact_id, sender, program, channel)"
            " VALUES ($1, $2, $4, $3)",
            list(repair),
        )
        await conn.execute(f"NOTIFY {self._guard.channel}")
        self._guard.report_backlog()


async def fill(
    cache: ConsentCache, guard: CacheGuard, entries: Sequence[tuple[ConsentKey, CachedConsent]]
) -> None:
    """After COMMIT: write the committed states over their tombstones (compare-and-set)."""
    try:
        await cache.put_many(entries)
    except CacheUnavailable:
        # The tombstones written before COMMIT still send every gate to Postgres.
        guard.report_failure("put")
