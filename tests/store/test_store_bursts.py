"""Bursts of concurrent single checks keep the cache's trust and its memory of "no row".

500 checks at once, as 500 API clients send them, used to send 500 reads of the
announcement counter together, and 500 ``MGET``s when the near cache did not hold the
numbers: past the client's pool of 100 connections redis-py refuses at once ("Too many
connections"), the guard took the refusal for Redis being down and emptied the near cache,
and every number without a consent row then cost a PostgreSQL read. Rule 2
of store/near.py still holds for each check: one that begins after an opt-out was
acknowledged never answers from a counter read sent before it began (docs/DESIGN.md,
invariant 2).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
import redis.asyncio as aioredis
from faults import RedisProcess
from redis.exceptions import ConnectionError as RedisConnectionError
from support import PG_URL, REDIS_URL, SECRET, eventually, make_settings, sms

from gateway.app import Gateway
from gateway.gate import GateAnswer
from gateway.store.cache import ConsentKey, RedisConsentCache
from gateway.store.near import NearCache
from keywords.model import Channel

BURST = 500
SCOPE = ("12345", "reminders", Channel.SMS)
CONTACT = "+14155550123"


@pytest.fixture
def redis() -> Iterator[RedisProcess]:
    """A private redis-server, so that its command counts are this test's alone."""
    server = RedisProcess()
    server.start()
    yield server
    server.close()


@pytest.fixture
async def burst_gateway(
    schema: str, redis_prefix: str, redis: RedisProcess
) -> AsyncIterator[Gateway]:
    """A gateway on the private Redis; half of the first ``BURST`` numbers opted in."""
    settings = make_settings(schema, redis_prefix, redis_url=redis.url)
    async with Gateway(settings, serve_http=False) as gw:
        conn = await asyncpg.connect(PG_URL, server_settings={"search_path": schema})
        try:
            await conn.execute(
                "INSERT INTO contacts (channel, address) SELECT 'sms', a FROM unnest($1::text[]) a",
                _numbers(0, BURST)[::2],
            )
            await conn.execute(
                "INSERT INTO consent (contact_id, sender, program, channel, state, version,"
                " updated_at, last_seq) SELECT id, '12345', 'reminders', 'sms', 'opted_in', 1,"
                " now(), 0 FROM contacts"
            )
        finally:
            await conn.close()
        await _trusted(gw)
        yield gw


def _numbers(start: int, stop: int) -> list[str]:
    return [f"+1628{n:07d}" for n in range(start, stop)]


def _near(gw: Gateway) -> NearCache:
    assert isinstance(gw.cache, NearCache)
    return gw.cache


async def _trusted(gw: Gateway) -> None:
    async def trusted() -> bool:
        return gw.guard.usable and await _near(gw)._in_step()

    await eventually(trusted, timeout=5, interval=0.01, message="the cache was never trusted")


def _answers_by_source(gw: Gateway) -> dict[str, float]:
    counter = gw.metrics.gate_checks
    return {
        source: sum(counter.labels(allowed, source)._value.get() for allowed in ("true", "false"))
        for source in ("cache", "postgres")
    }


def _failures(gw: Gateway) -> float:
    counter = gw.metrics.cache_failures
    return float(sum(counter.labels(op)._value.get() for op in ("get", "fill", "put", "tombstone")))


async def _calls(redis: RedisProcess, command: str) -> int:
    client = aioredis.Redis.from_url(redis.url)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def _burst(gw: Gateway, numbers: list[str]) -> list[GateAnswer]:
    return list(await asyncio.gather(*(gw.gate.check(*SCOPE, n) for n in numbers)))


def _expected(numbers: list[str]) -> list[str]:
    opted_in = set(_numbers(0, BURST)[::2])
    return ["opted_in" if n in opted_in else "no_consent" for n in numbers]


async def test_a_burst_after_a_batch_is_answered_from_memory_with_one_counter_read_at_a_time(
    burst_gateway: Gateway, redis: RedisProcess
) -> None:
    """After a batch, 500 concurrent single checks keep the cache's trust, read PostgreSQL
    for none of them (half have no consent row) and read the counter a few times in all."""
    gw = burst_gateway
    numbers = _numbers(0, BURST)
    await gw.gate.check_many(*SCOPE, numbers)
    await gw.gate.check_many(*SCOPE, numbers)  # Postgres's "no row" kept (rule 4)
    sources, failures = _answers_by_source(gw), _failures(gw)
    counter_reads = await _calls(redis, "get")

    answers = await _burst(gw, numbers)

    assert _expected(numbers) == [a.reason for a in answers]
    assert (0.0, True) == (_failures(gw) - failures, gw.guard.usable)
    after = _answers_by_source(gw)
    assert (BURST, 0) == (
        after["cache"] - sources["cache"],
        after["postgres"] - sources["postgres"],
    )
    # One read per check before: 500, of which 400 found no free connection.
    assert await _calls(redis, "get") - counter_reads <= 5


async def test_a_burst_the_near_cache_does_not_hold_keeps_the_cache_trusted(
    burst_gateway: Gateway,
) -> None:
    """500 concurrent checks of numbers the near cache has never seen: each reads Redis and
    then PostgreSQL, none is refused a connection, and the next burst comes from memory."""
    gw = burst_gateway
    numbers = _numbers(0, BURST)
    failures = _failures(gw)

    assert _expected(numbers) == [a.reason for a in await _burst(gw, numbers)]
    assert (0.0, True) == (_failures(gw) - failures, gw.guard.usable)

    before = _answers_by_source(gw)
    assert _expected(numbers) == [a.reason for a in await _burst(gw, numbers)]
    assert BURST == _answers_by_source(gw)["cache"] - before["cache"]


async def test_reads_leave_half_the_pool_to_the_writer(redis_prefix: str) -> None:
    """With a pool of 4 connections, 50 concurrent reads wait for one another instead of
    failing, and a tombstone written meanwhile finds a connection."""
    client = aioredis.Redis.from_url(REDIS_URL, max_connections=4)
    cache = RedisConsentCache(
        client, secret=SECRET.encode(), prefix=redis_prefix, entry_ttl=60, tombstone_ttl=60
    )
    try:
        reads = [
            cache.get_scope("sms", "12345", "reminders", _numbers(0, 1_000)) for _ in range(50)
        ]
        key = cache.keys_for("sms", "12345", "reminders", [CONTACT])[0]
        tombstone = cache.tombstone_many([(ConsentKey("sms", "12345", "reminders", CONTACT), 1)])
        results = await asyncio.gather(*reads, tombstone)
        assert all(r == [None] * 1_000 for r in results[:-1])
        assert b"t|1|" == await client.get(key)
    finally:
        await cache.close()


async def test_a_check_never_answers_from_a_counter_read_sent_before_it_began(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rule 2 with shared counter reads. A counter read is sent, an opt-out is then
    acknowledged while its announcement has not reached this instance's stream, and a check
    begins: it must not take the earlier read (which predates the opt-out and would let the
    near cache's "opted in" stand) but wait for one sent after it began, see that the stream
    lags, and ask Redis."""
    gw = gateway
    near = _near(gw)
    await _trusted(gw)
    await gw.pipeline.handle(sms("START", contact=CONTACT))

    async def answered_from_memory() -> bool:  # the writer's fill lands after its ack
        if CONTACT in near._entries.get(("sms", "12345", "reminders"), {}):
            return True
        await gw.gate.check(*SCOPE, CONTACT)
        return False

    await eventually(answered_from_memory, timeout=5, message="the near cache never held it")

    client = near._redis.client
    real_get = client.get
    sent, release = asyncio.Event(), asyncio.Event()

    async def delayed_reply(name: str) -> object:
        """Redis answers at once; the first reply reaches us only when released."""
        value = await real_get(name)
        if not sent.is_set():
            sent.set()
            await release.wait()
        return value

    held: list[str] = []
    monkeypatch.setattr(client, "get", delayed_reply)
    monkeypatch.setattr(near, "_apply", held.append)  # the stream lags
    early = asyncio.create_task(gw.gate.check(*SCOPE, CONTACT))
    await sent.wait()  # the counter read is sent (and answered) before the opt-out
    await gw.pipeline.handle(sms("STOP", contact=CONTACT))
    late = asyncio.create_task(gw.gate.check(*SCOPE, CONTACT))
    await asyncio.sleep(0.05)  # the late check is waiting for a counter read
    release.set()
    await early  # began before the opt-out was acknowledged: either answer is right
    answer = await late
    assert held, "the opt-out was never announced"
    assert (False, "opted_out") == (answer.allowed, answer.reason)


async def test_a_shared_counter_read_that_fails_sends_its_waiters_to_postgres(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checks waiting on a shared counter read that fails are answered from PostgreSQL
    (docs/DESIGN.md, invariant 2), none waits for ever, and the next read is sent anew."""
    gw = gateway
    near = _near(gw)
    await _trusted(gw)
    await gw.pipeline.handle(sms("START", contact=CONTACT))
    client = near._redis.client
    real_get = client.get
    sent, release = asyncio.Event(), asyncio.Event()
    reads = 0

    async def failing_second(name: str) -> object:
        nonlocal reads
        reads += 1
        if reads == 1:
            sent.set()
            await release.wait()
        elif reads == 2:
            raise RedisConnectionError("connection reset")
        return await real_get(name)

    monkeypatch.setattr(client, "get", failing_second)
    first = asyncio.create_task(gw.gate.check(*SCOPE, CONTACT))
    await sent.wait()
    waiting = [asyncio.create_task(gw.gate.check(*SCOPE, CONTACT)) for _ in range(3)]
    await asyncio.sleep(0.05)  # all three wait for the read after the first
    release.set()
    async with asyncio.timeout(5):
        answers = await asyncio.gather(first, *waiting)
    assert [("opted_in", True)] * 4 == [(a.reason, a.allowed) for a in answers]
    assert 2 == reads  # one read for the three, which failed
    await _trusted(gw)  # the guard trusts the cache again; a new read is sent
    assert (await gw.gate.check(*SCOPE, CONTACT)).allowed
    assert reads > 2
