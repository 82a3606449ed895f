"""The near cache: answers from memory only while in step with the announcement stream."""

from __future__ import annotations

import redis.asyncio as aioredis
from support import REDIS_URL, eventually, sms

from gateway.app import Gateway
from gateway.settings import Settings
from gateway.store.near import NearCache
from keywords.model import Channel

CONTACT = "+14155550123"


def _near(gw: Gateway) -> NearCache:
    assert isinstance(gw.cache, NearCache)
    return gw.cache


async def _in_step(gw: Gateway) -> None:
    async def in_step() -> bool:
        return gw.guard.usable and await _near(gw)._in_step()

    await eventually(in_step, timeout=5, interval=0.01, message="near cache never caught up")


async def _held(gw: Gateway) -> None:
    """Check CONTACT until the near cache answers it from memory.

    The writer fills the cache after acknowledging the change; until that lands the gate
    finds the tombstone and reads Postgres.
    """

    async def held() -> bool:
        if CONTACT in _near(gw)._entries.get(("sms", "12345", "reminders"), {}):
            return True
        await gw.gate.check("12345", "reminders", Channel.SMS, CONTACT)
        return False

    await eventually(held, timeout=5, interval=0.01, message="the near cache never held the answer")


async def test_a_change_on_one_instance_empties_the_others_near_entry(
    settings: Settings, gateway: Gateway
) -> None:
    """B answers 'opted in' from memory; A's STOP is refused by B's very next check."""
    async with Gateway(settings, serve_http=False) as b:
        await _in_step(b)
        await gateway.pipeline.handle(sms("START"))
        assert (await b.gate.check("12345", "reminders", Channel.SMS, CONTACT)).allowed
        await _held(b)  # B now answers this recipient from memory

        await gateway.pipeline.handle(sms("STOP"))
        answer = await b.gate.check("12345", "reminders", Channel.SMS, CONTACT)
        assert (False, "opted_out") == (answer.allowed, answer.reason)


async def test_a_lost_announcement_sends_the_gate_back_to_redis(
    gateway: Gateway, redis_prefix: str
) -> None:
    """The counter moved but no message came: the near copy is not believed."""
    await _in_step(gateway)
    await gateway.pipeline.handle(sms("START"))
    assert (await gateway.gate.check("12345", "reminders", Channel.SMS, CONTACT)).allowed
    near = _near(gateway)
    key = near._redis.keys_for("sms", "12345", "reminders", [CONTACT])[0]

    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        # A change whose announcement never arrived: new value in Redis, counter bumped.
        await client.set(key, "o|99|0")
        await client.incr(f"{redis_prefix}:seq")
    finally:
        await client.aclose()
    answer = await gateway.gate.check("12345", "reminders", Channel.SMS, CONTACT)
    assert (False, "opted_out") == (answer.allowed, answer.reason)


async def test_an_announcement_gap_empties_the_near_cache(gateway: Gateway) -> None:
    """Announcements are numbered; skipping a number means one was lost: forget everything."""
    await _in_step(gateway)
    await gateway.pipeline.handle(sms("START"))
    await _held(gateway)
    near = _near(gateway)

    near._apply(f"{near._applied + 2} unrelated-key")
    assert ({}, {}) == (near._where, {k: v for k, v in near._entries.items() if v})
