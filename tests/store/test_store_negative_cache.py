"""Negative answers: batches of numbers nobody has heard of cost Redis nothing, and stay fresh.

Two gateways share PostgreSQL and a private Redis started with the shipped
``deploy/redis.conf``; the batches go through ``POST /v1/gate/batch`` as a sender sends them.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis
from faults import RedisProcess
from support import PG_URL, ROOT, eventually, make_settings, sms

from gateway.app import Gateway
from gateway.store.cache import LocalConsentCache
from gateway.store.near import NearCache
from keywords.model import Channel

SCOPE = {"sender": "12345", "program": "reminders", "channel": "sms"}
COUNT = 200_000


@pytest.fixture
def redis() -> Iterator[RedisProcess]:
    """A private redis-server with the deployment's settings."""
    server = RedisProcess(config=ROOT / "deploy" / "redis.conf")
    server.start()
    yield server
    server.close()


@pytest.fixture
async def client(redis: RedisProcess) -> AsyncIterator[aioredis.Redis]:
    """A client of the private Redis, for measuring it."""
    conn = aioredis.Redis.from_url(redis.url)
    yield conn
    await conn.aclose()


async def call(gw: Gateway, path: str, *, key: str, body: Any) -> tuple[int, Any]:
    """One API POST to ``gw``; the status and the JSON answer."""
    url = f"http://127.0.0.1:{gw.http_port}{path}"
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    data = io.BytesIO(json.dumps(body).encode())  # streamed: a large body in one piece warns
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=data, headers=headers) as resp,
    ):
        return resp.status, await resp.json()


async def _footprint(client: aioredis.Redis) -> tuple[int, int]:
    """(keys, used_memory) of the private Redis."""
    info = await client.info("memory")
    return await client.dbsize(), int(info["used_memory"])


async def _in_step(gw: Gateway) -> None:
    near = gw.cache
    assert isinstance(near, NearCache)

    async def in_step() -> bool:
        return gw.guard.usable and await near._in_step()

    await eventually(in_step, timeout=5, interval=0.01, message="near cache never caught up")


async def _guard_listening(gw: Gateway, schema: str) -> None:
    """Wait until the cache guard LISTENs and has polled since: on subscribing it distrusts
    the cache once (whatever was announced while nobody listened), and a batch answered in
    that moment reads Postgres."""
    conn = await asyncpg.connect(PG_URL)
    try:

        async def listening() -> bool:
            count = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE query = $1",
                f'LISTEN "{schema}_cache_repair"',
            )
            return bool(count) and gw.guard.usable

        await eventually(listening, interval=0.01, message="the guard never listened")
    finally:
        await conn.close()


def _from_cache(gw: Gateway) -> float:
    """Gate answers given from the cache so far."""
    counter = gw.metrics.gate_checks
    total = 0.0
    for allowed in ("true", "false"):
        total += counter.labels(allowed, "cache")._value.get()
    return total


async def _batch(gw: Gateway, key: str, numbers: list[str]) -> list[str]:
    status, body = await call(gw, "/v1/gate/batch", key=key, body={**SCOPE, "to": numbers})
    assert 200 == status, body
    return [r["reason"] for r in body["results"]]


async def test_batches_of_unknown_numbers_leave_redis_as_it_was(
    schema: str, redis_prefix: str, redis: RedisProcess, client: aioredis.Redis
) -> None:
    """Two batches of 200,000 unknown numbers on each of two instances add no key and almost
    no memory to Redis; the second batch is answered from memory; one of them who then
    opts in is allowed at once by both instances."""
    assert {"maxmemory-policy": "noeviction"} == await client.config_get("maxmemory-policy")
    settings = make_settings(schema, redis_prefix, redis_url=redis.url)
    numbers = [f"+1628{n:07d}" for n in range(COUNT)]
    async with Gateway(settings) as a, Gateway(settings) as b:
        _, key = await a.api.store.create_key("negative", ["read"], actor="test")
        for gw in (a, b):
            await _in_step(gw)
        keys_before, memory_before = await _footprint(client)

        for gw in (a, b):
            assert {"no_consent"} == set(await _batch(gw, key, numbers))
            cached_before = _from_cache(gw)
            assert {"no_consent"} == set(await _batch(gw, key, numbers))
            assert COUNT == _from_cache(gw) - cached_before  # the second batch, from memory

        keys_after, memory_after = await _footprint(client)
        # Before the change: 200,000 more keys and about 30 MB.
        assert 0 == keys_after - keys_before
        assert memory_after - memory_before < 2 * 1024 * 1024

        joiner = numbers[123_456]
        await a.pipeline.handle(sms("START", contact=joiner))
        for gw in (a, b):
            status, answer = await call(gw, "/v1/gate/check", key=key, body={**SCOPE, "to": joiner})
            assert (200, True, "opted_in") == (status, answer["allowed"], answer["reason"])
        reasons = await _batch(b, key, numbers)
        assert "opted_in" == reasons[123_456]
        assert [joiner] == [n for n, r in zip(numbers, reasons, strict=True) if r != "no_consent"]


async def test_without_redis_negative_answers_are_bounded_and_an_opt_in_replaces_one(
    schema: str, redis_prefix: str
) -> None:
    """A single instance without Redis answers a repeated batch of unknown numbers from
    memory, keeps no more negative answers than its bound, and allows one of them at once
    after an opt-in."""
    settings = make_settings(schema, redis_prefix, redis_url=None)
    numbers = [f"+1628{n:07d}" for n in range(3_000)]
    async with Gateway(settings, serve_http=False) as gw:
        cache = gw.cache
        assert isinstance(cache, LocalConsentCache)
        cache._max_absent = 1_000
        await _guard_listening(gw, schema)
        await gw.gate.check_many("12345", "reminders", Channel.SMS, numbers[:1_000])
        before = _from_cache(gw)
        answers = await gw.gate.check_many("12345", "reminders", Channel.SMS, numbers[:1_000])
        assert (1_000, {"no_consent"}) == (_from_cache(gw) - before, {a.reason for a in answers})

        await gw.gate.check_many("12345", "reminders", Channel.SMS, numbers)
        assert len(cache._absent) <= 1_000

        await gw.pipeline.handle(sms("START", contact=numbers[7]))
        answer = await gw.gate.check("12345", "reminders", Channel.SMS, numbers[7])
        assert (True, "opted_in") == (answer.allowed, answer.reason)
