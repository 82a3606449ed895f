"""Near cache (I/O layer): an in-process copy of Redis entries, kept exact by an ordered stream.

The batch gate cannot afford one Redis key per recipient (the MGET alone caps it near the
network's rate), so each instance keeps the entries it has read in memory. Keeping them is
safe only because of four rules:

1. Every change announces itself *before* it commits: the writer's tombstone script takes
   the next number of a Redis counter (``<prefix>:seq``) and publishes it with the changed
   keys, atomically (cache.py). Every instance subscribes and drops those keys; the numbers
   are consecutive, so a lost message is seen as a gap and empties the whole near cache.
2. Every gate request first reads the counter. If this instance has not yet applied every
   announcement up to it, it waits a few milliseconds for the stream, then gives up on the
   near cache for that request and asks Redis. An opt-out acknowledged anywhere before the
   request began took its number before the acknowledgement, so it has been applied.
3. Only values read from Redis are kept, and only when no announcement arrived during the
   read. Values read from Postgres never enter the near cache: a read that began before a
   commit could bring back the state the commit replaced.
4. The one exception is "no consent row" (``NO_CONSENT``), which Redis never stores
   (cache.py): a key that Redis reported *missing* (no state, no tombstone), with no
   announcement applied during that read, gets a placeholder (``_PROBE``, answered as a
   miss); Postgres's "no row" replaces the placeholder only if it is still there. A change
   whose tombstone Redis held before that read would have been seen, not missing; one
   tombstoned after it is announced after it, and its announcement either removes the
   placeholder (so nothing is kept) or arrives later and removes the kept answer. Either
   way the near cache never keeps "no row" past a change, and a later opt-in is allowed
   at once.

Rule 2's counter read is shared: requests that arrive while one ``GET`` of the counter is
in flight wait for the next one, sent as soon as it returns, and all of them take its
answer. A request only ever takes a read sent after it began, so the rule holds for each
as if it had read alone (docs/DESIGN.md, invariant 2); one read is in flight per process
instead of one per request.
Under a burst of 500 concurrent single checks the per-request reads took every connection
of the client's pool ("Too many connections"), the guard stopped trusting the cache and
this copy, with its "no row" answers, was emptied.

Whenever the guard stops trusting the cache, it calls ``forget_local`` and this copy is
emptied; it refills from Redis once the guard trusts it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from redis.exceptions import RedisError

from gateway.store.cache import (
    NO_CONSENT,
    CachedConsent,
    CacheUnavailable,
    ConsentKey,
    RedisConsentCache,
    decode,
)
from gateway.waiting import wait_event
from keywords.model import ConsentState

log = logging.getLogger(__name__)

_Scope = tuple[str, str, str]  # channel, sender, program
# Rule 4's placeholder: Redis had nothing for the key and Postgres is being asked. Never
# returned; a version no consent row has.
_PROBE = CachedConsent(ConsentState.NONE, -1, None)


class NearCache:
    """A ``ConsentCache`` that answers from memory when the invalidation stream is current."""

    def __init__(
        self,
        redis: RedisConsentCache,
        *,
        max_entries: int = 2_000_000,
        catch_up_seconds: float = 0.005,
    ) -> None:
        self._redis = redis
        self._max_entries = max_entries
        self._catch_up = catch_up_seconds
        self._entries: dict[_Scope, dict[str, CachedConsent]] = {}
        self._where: dict[str, tuple[_Scope, str]] = {}  # redis key -> (scope, address)
        self._applied = 0  # the last announcement number applied
        self._epoch = 0  # grows on every drop: a fill that raced one is discarded
        self._live = False  # subscribed and in step with the stream
        self._progress = asyncio.Event()
        # The shared counter read (rule 2): a GET is in flight, and the callers waiting for
        # the one after it (not sent yet, so sent after each of them began).
        self._reading = False
        self._next_read: asyncio.Future[int] | None = None
        self._reader: asyncio.Task[None] | None = None

    # -- the stream ------------------------------------------------------------------------

    def forget_local(self) -> None:
        """Empty the near cache."""
        self._entries.clear()
        self._where.clear()
        self._epoch += 1

    def _apply(self, data: str) -> None:
        number, _, keys = data.partition(" ")
        seq = int(number)
        if seq <= self._applied:
            return  # announced before we (re)subscribed: already reflected
        if seq != self._applied + 1:
            log.info("near cache: announcement gap, emptied", extra={"seq": seq})
            self.forget_local()
        else:
            self._epoch += 1
            for key in keys.split(" "):
                found = self._where.pop(key, None)
                if found is not None:
                    table = self._entries.get(found[0])
                    if table is not None:
                        table.pop(found[1], None)
        self._applied = seq
        self._progress.set()

    async def run(self) -> None:
        """Follow the announcement stream until cancelled, resubscribing after failures."""
        backoff = 0.05
        while True:
            pubsub = self._redis.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._redis.channel)
                # Subscribed first, then read the counter: nothing falls between the two.
                current = await self._redis.client.get(self._redis.seq_key)
                self.forget_local()
                self._applied = int(current or 0)
                self._live = True
                self._progress.set()
                backoff = 0.05
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        raw = message["data"]
                        self._apply(raw.decode() if isinstance(raw, bytes) else str(raw))
            except (RedisError, OSError):
                self._live = False
                self.forget_local()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                self._live = False
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _get_counter(self) -> int:
        try:
            return int(await self._redis.client.get(self._redis.seq_key) or 0)
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(str(exc)) from exc

    def _next_counter(self) -> asyncio.Future[int]:
        """The next counter read's answer: that read is not sent yet, so it is sent after
        this call (rule 2); ``_read_ended`` sends it when the read in flight returns."""
        waiter = self._next_read
        if waiter is None:
            waiter = self._next_read = asyncio.get_running_loop().create_future()
        return waiter

    def _read_ended(self) -> None:
        """The read in flight returned: serve whoever arrived meanwhile with a new one."""
        if self._next_read is None:
            self._reading = False
        else:
            self._reader = asyncio.get_running_loop().create_task(self._read_for_waiters())

    async def _read_for_waiters(self) -> None:
        waiter = None
        try:
            while (waiter := self._next_read) is not None:
                # Taken before the GET is sent: whoever arrives from now on waits for the next.
                self._next_read = None
                try:
                    value = await self._get_counter()
                except Exception as exc:  # noqa: BLE001 - handed to the waiters, who raise it as their own read would
                    waiter.set_exception(exc)
                else:
                    waiter.set_result(value)
        finally:
            # Cancelled (the process stops): nobody may wait forever on a read never sent.
            for pending in (waiter, self._next_read):
                if pending is not None and not pending.done():
                    pending.set_exception(CacheUnavailable("the near cache stopped"))
            self._next_read = None
            self._reading = False
            self._reader = None

    async def _in_step(self) -> bool:
        """True when every announcement made before now has been applied here."""
        if not self._live:
            return False
        if self._reading:
            # Shielded: a caller that is cancelled must not cancel the read others wait for.
            current = await asyncio.shield(self._next_counter())
        else:
            self._reading = True  # the common case: nobody else is reading, read inline
            try:
                current = int(await self._redis.client.get(self._redis.seq_key) or 0)
            except (RedisError, OSError) as exc:
                raise CacheUnavailable(str(exc)) from exc
            finally:
                self._read_ended()
        deadline = time.monotonic() + self._catch_up
        while self._applied < current:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._live:
                return False
            self._progress.clear()
            await wait_event(self._progress, remaining)
        return True

    # -- ConsentCache ----------------------------------------------------------------------

    async def get_scope(
        self, channel: str, sender: str, program: str, addresses: Sequence[str]
    ) -> list[CachedConsent | None]:
        """From memory when in step with the stream; the rest, or everything, from Redis."""
        if not await self._in_step():
            return await self._redis.get_scope(channel, sender, program, addresses)
        scope = (channel, sender, program)
        table = self._entries.get(scope)
        if table is None:
            table = self._entries[scope] = {}
        get = table.get
        out = [get(a) for a in addresses]
        probe = _PROBE
        missing = [i for i, entry in enumerate(out) if entry is None or entry is probe]
        if not missing:
            return out
        wanted = [addresses[i] for i in missing]
        keys = self._redis.keys_for(channel, sender, program, wanted)
        epoch = self._epoch
        raws = await self._redis.mget_raw(keys)
        keep = epoch == self._epoch and len(self._where) + len(keys) <= self._max_entries
        where = self._where
        for i, address, key, raw in zip(missing, wanted, keys, raws, strict=True):
            if raw is None:
                out[i] = None
                if keep:  # rule 4: missing in Redis, nothing announced meanwhile
                    table[address] = probe
                    where[key] = (scope, address)
                continue
            value = out[i] = decode(raw)
            if keep and value is not None:
                table[address] = value
                where[key] = (scope, address)
        return out

    def remember_absent(
        self, channel: str, sender: str, program: str, addresses: Sequence[str]
    ) -> None:
        """Keep "no consent row" where rule 4's placeholder is still in place."""
        table = self._entries.get((channel, sender, program))
        if table is None:
            return
        probe, get = _PROBE, table.get
        for address in addresses:
            if get(address) is probe:
                table[address] = NO_CONSENT

    async def put_many(self, entries: Sequence[tuple[ConsentKey, CachedConsent]]) -> None:
        """Write through to Redis; the near cache fills only from reads."""
        await self._redis.put_many(entries)

    async def tombstone_many(
        self,
        entries: Sequence[tuple[ConsentKey, int]],
        settled: Sequence[tuple[ConsentKey, CachedConsent]] = (),
    ) -> None:
        """Announced tombstones (every near cache drops the keys), after ``settled``."""
        await self._redis.tombstone_many(entries, settled)

    async def ping(self) -> None:
        """Round trip to Redis."""
        await self._redis.ping()

    async def close(self) -> None:
        """Close the Redis client."""
        await self._redis.close()
