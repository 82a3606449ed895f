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
   they replace their own tombstones and nothing newer). The writer batches these
   (``Fills``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping, Sequence
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


class Fills:
    """The writer's committed states on their way to the cache, after COMMIT.

    The post-commit cache write is awaited by nobody: a gate that reads before it lands
    finds the tombstone and asks Postgres, which has the change. When more events are
    already queued at COMMIT, it rides on the next batch's tombstone call (one Redis round
    trip a batch instead of two: the states and tombstones are compare-and-set by version
    alike, so their order does not matter); when none are, or the next batch changed no
    consent, it is written on its own, in the background.
    """

    def __init__(self, cache: ConsentCache, guard: CacheGuard, *, max_in_flight: int) -> None:
        self._cache = cache
        self._guard = guard
        self._max = max_in_flight  # background writes before the writer waits for them
        self._unfilled: dict[ConsentKey, CachedConsent] = {}  # the next tombstones take them
        self._tasks: set[asyncio.Task[None]] = set()

    def tombstone(self, entries: Mapping[ConsentKey, CachedConsent]) -> Invalidation:
        """Send the tombstones of a batch's new versions, with the states committed before.

        If the call fails, those states are lost and their own tombstones stay: the gate
        asks Postgres, which has them.
        """
        versions = [(k, v.version) for k, v in entries.items()]
        invalidation = Invalidation(
            self._cache, self._guard, versions, list(self._unfilled.items())
        )
        if invalidation.sent:
            self._unfilled = {}
        return invalidation

    async def committed(self, entries: Mapping[ConsentKey, CachedConsent], *, queued: bool) -> None:
        """A batch committed ``entries``; ``queued``: events are waiting for the next one."""
        unfilled = self._unfilled
        for key, entry in entries.items():
            held = unfilled.get(key)
            if held is None or held.version < entry.version:
                unfilled[key] = entry
        if unfilled and (not queued or not entries):
            # No batch is waiting to carry them, or this one had no tombstones and the next
            # may have none either: write them now rather than let them wait.
            task = self.now()
            if task is not None and len(self._tasks) > self._max:
                await task  # bounded: a slow Redis slows the writer rather than piling up

    def now(self) -> asyncio.Task[None] | None:
        """Write the unfilled states in the background, so the writer can take the next batch."""
        if not self._unfilled:
            return None
        entries, self._unfilled = list(self._unfilled.items()), {}
        task = asyncio.create_task(fill(self._cache, self._guard, entries))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def drain(self) -> None:
        """Write what is left and wait for every write in flight (the writer stops)."""
        self.now()
        await asyncio.gather(*self._tasks)
