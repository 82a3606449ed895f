"""The consent cache on real Redis: versions, races with readers, Redis dying, partitions, and
rectify's invalidation, which takes the writer's path (gateway/store/invalidate.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

import asyncpg
import pytest
import redis.asyncio as aioredis
from faults import RedisProcess, TcpProxy
from support import PG_URL, REDIS_URL, SECRET, count_rows, eventually, make_settings, sms

from gateway.app import Gateway
from gateway.errors import TemporaryFailure
from gateway.gate import SendGate
from gateway.pipeline import Pipeline
from gateway.settings import Settings
from gateway.store.cache import (
    NO_CONSENT,
    CachedConsent,
    CacheUnavailable,
    ConsentCache,
    ConsentKey,
    RedisConsentCache,
)
from gateway.store.guard import CacheGuard
from gateway.store.privacy import PrivacyStore
from gateway.store.writer import ConsentWriter
from keywords.model import Channel, ConsentState

CONTACT = "+14155550123"
KEY = ConsentKey("sms", "12345", "reminders", CONTACT)


def _redis_cache(client: aioredis.Redis, prefix: str) -> RedisConsentCache:
    return RedisConsentCache(
        client, secret=SECRET.encode(), prefix=prefix, entry_ttl=60, tombstone_ttl=60
    )


async def _cached(cache: ConsentCache, key: ConsentKey = KEY) -> CachedConsent | None:
    return (await cache.get_scope(key.channel, key.sender, key.program, [key.address]))[0]


async def test_an_older_version_never_overwrites_a_newer_one(redis_prefix: str) -> None:
    """Compare-and-set by version: v1 written after v2 is ignored."""
    client = aioredis.Redis.from_url(REDIS_URL)
    cache = _redis_cache(client, redis_prefix)
    try:
        await cache.put_many([(KEY, CachedConsent(ConsentState.OPTED_OUT, 2))])
        await cache.put_many([(KEY, CachedConsent(ConsentState.OPTED_IN, 1))])
        assert CachedConsent(ConsentState.OPTED_OUT, 2) == await _cached(cache)
    finally:
        await cache.close()


async def test_a_tombstone_hides_the_entry_until_its_version_is_written(redis_prefix: str) -> None:
    """A tombstone reads as a miss, blocks older writes, and yields to its own version."""
    client = aioredis.Redis.from_url(REDIS_URL)
    cache = _redis_cache(client, redis_prefix)
    try:
        await cache.put_many([(KEY, CachedConsent(ConsentState.OPTED_IN, 1))])
        await cache.tombstone_many([(KEY, 2)])
        assert await _cached(cache) is None
        await cache.put_many([(KEY, CachedConsent(ConsentState.OPTED_IN, 1))])
        assert await _cached(cache) is None
        await cache.put_many([(KEY, CachedConsent(ConsentState.OPTED_OUT, 2))])
        await cache.tombstone_many([(KEY, 2)])  # a late duplicate tombstone changes nothing
        assert CachedConsent(ConsentState.OPTED_OUT, 2) == await _cached(cache)
    finally:
        await cache.close()


async def test_redis_keys_do_not_contain_the_address(gateway: Gateway, redis_prefix: str) -> None:
    """Keys carry a keyed digest: no phone number is readable in Redis."""
    await gateway.pipeline.handle(sms("START", contact=CONTACT))
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [k.decode() async for k in client.scan_iter(f"{redis_prefix}:*", count=10_000)]
    finally:
        await client.aclose()
    assert keys
    assert not [k for k in keys if "4155550123" in k]


class _Passthrough:
    """A ``ConsentCache`` that hands every call to the real one; tests override one method."""

    def __init__(self, inner: ConsentCache) -> None:
        self._inner = inner

    async def get_scope(
        self, channel: str, sender: str, program: str, addresses: Sequence[str]
    ) -> list[CachedConsent | None]:
        return await self._inner.get_scope(channel, sender, program, addresses)

    async def put_many(self, entries: Sequence[tuple[ConsentKey, CachedConsent]]) -> None:
        await self._inner.put_many(entries)

    def remember_absent(
        self, channel: str, sender: str, program: str, addresses: Sequence[str]
    ) -> None:
        self._inner.remember_absent(channel, sender, program, addresses)

    async def tombstone_many(
        self,
        entries: Sequence[tuple[ConsentKey, int]],
        settled: Sequence[tuple[ConsentKey, CachedConsent]] = (),
    ) -> None:
        await self._inner.tombstone_many(entries, settled)

    async def ping(self) -> None:
        await self._inner.ping()

    def forget_local(self) -> None:
        self._inner.forget_local()

    async def close(self) -> None:
        await self._inner.close()


class _HeldCache(_Passthrough):
    """The real cache, except that the gate's fill waits until the test releases it."""

    def __init__(self, inner: ConsentCache) -> None:
        super().__init__(inner)
        self.fill_started = asyncio.Event()
        self.release = asyncio.Event()

    async def put_many(self, entries: Sequence[tuple[ConsentKey, CachedConsent]]) -> None:
        self.fill_started.set()
        await self.release.wait()
        await self._inner.put_many(entries)


async def test_a_slow_reader_cannot_bring_back_consent_after_an_opt_out(
    gateway: Gateway, redis_prefix: str
) -> None:
    """A gate read of 'opted in' that lands after the opt-out's commit is discarded."""
    await gateway.pipeline.handle(sms("START"))
    client = aioredis.Redis.from_url(REDIS_URL)
    raw = _redis_cache(client, redis_prefix)
    await raw.put_many([])  # warm the script
    # Forget the cached state so the slow gate must read Postgres.
    await client.delete(raw.redis_key(KEY))
    held = _HeldCache(raw)
    slow_gate = SendGate(
        gateway.pool, held, gateway.guard, gateway.catalogs, gateway.metrics,
        suppressed=gateway.suppression.contains, default_region="US",
    )  # fmt: skip
    try:
        # The gate writes what it read back only while the guard trusts Redis; on a loaded
        # machine one slow ping can make it distrust Redis for a poll: wait for trust first.
        await eventually(lambda: gateway.guard.cache_reachable, interval=0.01)
        reader = asyncio.create_task(slow_gate.check("12345", "reminders", Channel.SMS, CONTACT))
        await asyncio.wait_for(held.fill_started.wait(), 10)  # it has read 'opted_in v1'
        await gateway.pipeline.handle(sms("STOP"))  # commits v2 and acknowledges
        held.release.set()
        stale = await reader
        assert stale.allowed  # its answer predates the opt-out, which is fine
        assert (
            ConsentState.OPTED_OUT
            == (await _cached(raw) or CachedConsent(ConsentState.NONE, 0)).state
        )
        after = await gateway.gate.check("12345", "reminders", Channel.SMS, CONTACT)
        assert (False, "opted_out") == (after.allowed, after.reason)
    finally:
        await client.aclose()


async def test_readers_racing_opt_outs_never_leave_an_allowing_entry(gateway: Gateway) -> None:
    """Many gate checks racing each STOP: once acknowledged, the cache and gate refuse."""
    gate = gateway.gate
    for round_ in range(25):
        contact = f"+1415556{round_:04d}"
        await gateway.pipeline.handle(sms("START", contact=contact))
        checks = [gate.check("12345", "reminders", Channel.SMS, contact) for _ in range(20)]
        stop = asyncio.create_task(gateway.pipeline.handle(sms("STOP", contact=contact)))
        await asyncio.gather(*checks)
        assert (await stop).ledger_seqs
        key = ConsentKey("sms", "12345", "reminders", contact)
        entry = await _cached(gateway.cache, key)
        assert entry is None or ConsentState.OPTED_OUT == entry.state
        assert not (await gate.check("12345", "reminders", Channel.SMS, contact)).allowed


async def test_redis_stopped_mid_test_keeps_the_gate_correct(
    schema: str, redis_prefix: str
) -> None:
    """Kill Redis: opt-outs still commit and the gate reads Postgres; restart: cache repaired."""
    redis = RedisProcess()
    redis.start()
    settings = make_settings(schema, redis_prefix, redis_url=redis.url)
    try:
        async with Gateway(settings, serve_http=False) as gw:
            await gw.pipeline.handle(sms("START"))
            assert (await gw.gate.check("12345", "reminders", Channel.SMS, CONTACT)).allowed

            redis.stop()
            outcome = await gw.pipeline.handle(sms("STOP"))
            assert outcome.ledger_seqs
            answer = await gw.gate.check("12345", "reminders", Channel.SMS, CONTACT)
            assert (False, "opted_out") == (answer.allowed, answer.reason)

            redis.start()  # empty, as a restarted cache-only Redis is
            await _until(lambda: gw.guard.usable)
            answer = await gw.gate.check("12345", "reminders", Channel.SMS, CONTACT)
            assert (False, "opted_out") == (answer.allowed, answer.reason)
            entry = await _cached(gw.cache)
            assert entry is not None
            assert ConsentState.OPTED_OUT == entry.state
    finally:
        redis.close()


async def test_an_instance_cut_off_from_redis_cannot_leave_others_allowing(
    settings: Settings, schema: str, redis_prefix: str
) -> None:
    """A's path to Redis is cut: its STOP reaches B's gate through Postgres within 50 ms."""
    target = urlsplit(REDIS_URL)
    assert target.hostname is not None
    assert target.port is not None
    proxy = TcpProxy(target.hostname, target.port)
    await proxy.start()
    # The same Redis database as B, reached through the proxy.
    through_proxy = target._replace(netloc=f"127.0.0.1:{proxy.port}").geturl()
    a_settings = make_settings(schema, redis_prefix, redis_url=through_proxy)
    try:
        async with (
            Gateway(a_settings, serve_http=False) as a,
            Gateway(settings, serve_http=False) as b,
        ):
            await a.pipeline.handle(sms("START"))
            assert (await b.gate.check("12345", "reminders", Channel.SMS, CONTACT)).allowed

            async def landed() -> bool:  # A fills the cache after acknowledging
                entry = await _cached(b.cache)
                wanted = (ConsentState.OPTED_IN, 1)
                return entry is not None and (entry.state, entry.version) == wanted

            await eventually(
                landed, timeout=5, interval=0.01, message="A's cache write never landed"
            )
            proxy.cut()  # Redis still holds 'opted_in v1', and B can still read it

            await a.pipeline.handle(sms("STOP"))
            acked = time.monotonic()
            while (await b.gate.check("12345", "reminders", Channel.SMS, CONTACT)).allowed:
                assert time.monotonic() - acked < 0.05, "B allowed a send 50 ms after the opt-out"
                await asyncio.sleep(0.001)

            proxy.restore()
            await _until(lambda: a.guard.usable and b.guard.usable)
            entry = await _cached(b.cache)
            assert entry is not None
            assert ConsentState.OPTED_OUT == entry.state
    finally:
        await proxy.close()


async def _until(predicate: Callable[[], bool], within: float = 10.0) -> None:
    await eventually(
        predicate, timeout=within, interval=0.01, message="condition not reached in time"
    )


class _PingFailsOnce(_Passthrough):
    """The real cache, except that its first ping raises what no handler expects (a bug)."""

    def __init__(self, inner: ConsentCache) -> None:
        super().__init__(inner)
        self.pings = 0

    async def ping(self) -> None:
        self.pings += 1
        if self.pings == 1:
            raise RuntimeError("unexpected")
        await self._inner.ping()


async def test_the_guard_outlives_an_unexpected_error_and_stops_when_cancelled(
    gateway: Gateway, settings: Settings, redis_prefix: str
) -> None:
    """A poll that fails in a way nobody foresaw distrusts the cache for a moment; the guard
    goes on polling (were its task to end, nothing would repair the cache or trust it again),
    and it still stops when the gateway cancels it."""
    client = aioredis.Redis.from_url(REDIS_URL)
    cache = _PingFailsOnce(_redis_cache(client, redis_prefix))
    guard = CacheGuard(
        cache,
        gateway.pool,
        interval=0.01,
        metrics=gateway.metrics,
        channel=f"{settings.database.schema}_cache_repair",
        connect=lambda: asyncpg.connect(PG_URL),
    )
    task = asyncio.create_task(guard.run())
    try:

        def trusted_again() -> bool:
            assert not task.done(), "the guard stopped"
            return cache.pings >= 3 and guard.usable

        await eventually(
            trusted_again,
            timeout=5,
            interval=0.01,
            message="the guard never trusted the cache again",
        )
    finally:
        # As the gateway stops its tasks (app.py): cancel again until it ends, since on 3.11 a
        # cancel that lands as a Redis call completes can be swallowed (CPython gh-86296).
        deadline = time.monotonic() + 5
        while not task.done() and time.monotonic() < deadline:
            task.cancel()
            await asyncio.wait([task], timeout=0.5)
        await client.aclose()
    assert task.cancelled(), "the guard did not stop"


class _Counting(_Passthrough):
    """The real cache, counting the writer's two kinds of call."""

    def __init__(self, inner: ConsentCache) -> None:
        super().__init__(inner)
        self.puts = 0
        self.carried = 0  # tombstone calls that also stored committed states

    async def put_many(self, entries: Sequence[tuple[ConsentKey, CachedConsent]]) -> None:
        self.puts += 1
        await super().put_many(entries)

    async def tombstone_many(
        self,
        entries: Sequence[tuple[ConsentKey, int]],
        settled: Sequence[tuple[ConsentKey, CachedConsent]] = (),
    ) -> None:
        self.carried += bool(settled)
        await super().tombstone_many(entries, settled)


async def test_committed_states_ride_on_the_next_batches_tombstones(gateway: Gateway) -> None:
    """Under a queue, a batch's states reach Redis with the next batch's tombstones; once the
    queue is empty the last ones are written on their own. Every state ends up cached."""
    counting = _Counting(gateway.cache)
    writer = ConsentWriter(gateway.pool, counting, gateway.guard, gateway.metrics, max_batch=5)
    pipeline = Pipeline(
        gateway.catalogs, writer, gateway.metrics, default_region="US", max_text_chars=1600
    )
    contacts = [f"+1415557{n:04d}" for n in range(60)]
    writer.start()
    try:
        outcomes = await asyncio.gather(
            *(pipeline.handle(sms("START", contact=c)) for c in contacts)
        )
    finally:
        await writer.stop()
    assert all(o.ledger_seqs for o in outcomes)
    assert counting.carried >= 3  # 60 events, 5 a batch, two writers: most batches had a queue
    assert counting.puts < counting.carried
    for contact in contacts:
        entry = await _cached(gateway.cache, ConsentKey("sms", "12345", "reminders", contact))
        assert entry is not None
        assert ConsentState.OPTED_IN == entry.state


NEW_CONTACT = "+14155550177"
NEW_KEY = ConsentKey("sms", "12345", "reminders", NEW_CONTACT)


class _Watching(_Passthrough):
    """The real cache; each tombstone call records what Postgres had committed at that moment."""

    def __init__(self, inner: ConsentCache, pool: asyncpg.Pool) -> None:
        super().__init__(inner)
        self._pool = pool
        self.calls: list[tuple[dict[ConsentKey, int], int]] = []

    async def tombstone_many(
        self,
        entries: Sequence[tuple[ConsentKey, int]],
        settled: Sequence[tuple[ConsentKey, CachedConsent]] = (),
    ) -> None:
        async with self._pool.acquire() as conn:  # not the caller's: sees only what committed
            committed = await conn.fetchval("SELECT max(version) FROM consent")
        self.calls.append((dict(entries), committed))
        await super().tombstone_many(entries, settled)


class _TombstonesFail(_Passthrough):
    """The real cache, except that Redis refuses every tombstone."""

    async def tombstone_many(
        self,
        entries: Sequence[tuple[ConsentKey, int]],
        settled: Sequence[tuple[ConsentKey, CachedConsent]] = (),
    ) -> None:
        raise CacheUnavailable("refused by test")


def _privacy(gateway: Gateway, cache: ConsentCache) -> PrivacyStore:
    """The gateway's privacy store, on ``cache``."""
    return PrivacyStore(
        gateway.pool,
        cache,
        gateway.guard,
        gateway.api.suppression,
        notify_channel=gateway.api.channel,
    )


async def _trusted(gateway: Gateway) -> None:
    """Wait until the guard trusts Redis (one slow ping on a loaded machine distrusts it)."""
    await eventually(lambda: gateway.guard.cache_reachable, interval=0.01)


async def test_rectify_tombstones_both_addresses_before_it_commits(gateway: Gateway) -> None:
    """Rectify takes the writer's path: the tombstones, with the new version, reach Redis
    while Postgres still holds the old version, and the new address's state follows."""
    await gateway.pipeline.handle(sms("START"))  # opted_in, version 1
    await _trusted(gateway)
    watching = _Watching(gateway.cache, gateway.pool)
    await _privacy(gateway, watching).rectify("sms", CONTACT, NEW_CONTACT, "test")

    assert [({KEY: 2, NEW_KEY: 2}, 1)] == watching.calls  # before COMMIT: 1 was committed
    assert await _cached(gateway.cache) is None  # the old address: a tombstone, no state
    assert CachedConsent(ConsentState.OPTED_IN, 2) == dataclasses.replace(
        await _cached(gateway.cache, NEW_KEY) or NO_CONSENT, since=None
    )


async def test_a_gate_check_after_rectify_never_sees_the_old_addresss_state(
    gateway: Gateway, redis_prefix: str
) -> None:
    """A gate that read 'opted in' for the old address before the rectify, and writes it
    back after, is outdone by the tombstone: the old address is refused from then on."""
    await gateway.pipeline.handle(sms("START"))
    client = aioredis.Redis.from_url(REDIS_URL)
    raw = _redis_cache(client, redis_prefix)
    await raw.put_many([])  # warm the script
    await client.delete(raw.redis_key(KEY))  # the slow gate must read Postgres
    held = _HeldCache(raw)
    slow_gate = SendGate(
        gateway.pool, held, gateway.guard, gateway.catalogs, gateway.metrics,
        suppressed=gateway.suppression.contains, default_region="US",
    )  # fmt: skip
    try:
        await _trusted(gateway)
        reader = asyncio.create_task(slow_gate.check("12345", "reminders", Channel.SMS, CONTACT))
        await asyncio.wait_for(held.fill_started.wait(), 10)  # it has read 'opted_in v1'
        await gateway.api.privacy.rectify("sms", CONTACT, NEW_CONTACT, "test")
        held.release.set()
        assert (await reader).allowed  # its answer predates the rectify, which is fine
        assert await _cached(raw) is None  # its 'opted_in v1' did not land over the v2 tombstone
        old = await gateway.gate.check("12345", "reminders", Channel.SMS, CONTACT)
        new = await gateway.gate.check("12345", "reminders", Channel.SMS, NEW_CONTACT)
        assert [(False, "no_consent"), (True, "opted_in")] == [
            (old.allowed, old.reason),
            (new.allowed, new.reason),
        ]
    finally:
        await client.aclose()


async def test_rectify_is_refused_when_redis_cannot_take_the_tombstones(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """Unlike the writer, rectify leaves no repair row (it could not name the old address's
    keys): it rolls back with a temporary error and changes nothing."""
    await gateway.pipeline.handle(sms("START"))
    await _trusted(gateway)
    with pytest.raises(TemporaryFailure):
        await _privacy(gateway, _TombstonesFail(gateway.cache)).rectify(
            "sms", CONTACT, NEW_CONTACT, "test"
        )
    assert CONTACT == await db.fetchval("SELECT address FROM contacts")
    assert 1 == await db.fetchval("SELECT version FROM consent")
    assert 0 == await count_rows(db, "cache_repair")
    assert 0 == await count_rows(db, "contact_addresses")
