"""The gateway as processes: two instances sharing state, SIGTERM draining, the embedded default."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from processes import GatewayProcess
from support import PG_URL, REDIS_URL, SECRET

from gateway.app import WEBHOOK_PURPOSE
from gateway.edges.signing import HEADER, derive_key, sign

KEY = derive_key(SECRET.encode(), WEBHOOK_PURPOSE)
SCOPE = {"sender": "12345", "program": "reminders", "channel": "sms"}

pytestmark = pytest.mark.slow


async def _post(session: aiohttp.ClientSession, url: str, payload: object) -> tuple[int, dict]:  # type: ignore[type-arg]
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", HEADER: sign(KEY, body)}
    async with session.post(url, data=body, headers=headers) as resp:
        return resp.status, await resp.json()


def _env() -> dict[str, str]:
    return {"GATEWAY_DATABASE_URL": PG_URL, "GATEWAY_REDIS_URL": REDIS_URL}


async def test_opt_out_on_one_instance_is_refused_by_the_other_at_once(
    tmp_path: Path, schema: str, redis_prefix: str
) -> None:
    """Two gateway processes on one Postgres and Redis: B refuses as soon as A acknowledges."""
    a = GatewayProcess(tmp_path, schema=schema, redis_prefix=redis_prefix, env=_env(), name="a")
    b = GatewayProcess(tmp_path, schema=schema, redis_prefix=redis_prefix, env=_env(), name="b")
    a.start()
    b.start()
    try:
        async with aiohttp.ClientSession() as session:
            mo = {"from": "+14155550123", "to": "12345"}
            await _post(session, f"{a.url}/v1/inbound/sms", {**mo, "id": "1", "text": "START"})
            check = {**SCOPE, "to": "+14155550123"}
            _, before = await _post(session, f"{b.url}/v1/gate/check", check)
            assert before["allowed"]  # and B's cache now holds 'opted_in'

            status, _ = await _post(
                session, f"{a.url}/v1/inbound/sms", {**mo, "id": "2", "text": "STOP"}
            )
            assert 200 == status
            _, after = await _post(session, f"{b.url}/v1/gate/check", check)
            assert (False, "opted_out") == (after["allowed"], after["reason"])
    finally:
        assert 0 == a.stop()
        assert 0 == b.stop()


async def test_sigterm_drains_in_flight_work(
    tmp_path: Path, schema: str, redis_prefix: str
) -> None:
    """Every request answered 200 before or during shutdown is committed; exit status 0."""
    gw = GatewayProcess(tmp_path, schema=schema, redis_prefix=redis_prefix, env=_env())
    gw.start()
    answered: list[str] = []
    first_answer = asyncio.Event()

    async def one(session: aiohttp.ClientSession, i: int) -> None:
        payload = {"id": f"m{i}", "from": f"+1415555{i:04d}", "to": "12345", "text": "STOP"}
        try:
            status, _ = await _post(session, f"{gw.url}/v1/inbound/sms", payload)
        except aiohttp.ClientError:
            return  # refused or cut during shutdown: the sender retries; nothing acked
        if status == 200:
            answered.append(f"http:m{i}")
            first_answer.set()

    async with aiohttp.ClientSession() as session:
        tasks = [asyncio.create_task(one(session, i)) for i in range(300)]
        await asyncio.wait_for(first_answer.wait(), 10)
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGTERM)
        await asyncio.gather(*tasks)
    assert 0 == gw.wait()

    conn = await asyncpg.connect(PG_URL, server_settings={"search_path": schema})
    try:
        keys = {r["dedupe_key"] for r in await conn.fetch("SELECT dedupe_key FROM inbound_events")}
    finally:
        await conn.close()
    assert answered
    assert set(answered) <= keys


async def test_embedded_default_serves_within_ten_seconds(tmp_path: Path) -> None:
    """No database URL, no Redis: `gateway serve` starts its own PostgreSQL and answers."""
    gw = GatewayProcess(tmp_path, schema="consent", redis_prefix="cg", env={})
    gw.env = {k: v for k, v in gw.env.items() if not k.startswith("GATEWAY_")}
    started = time.monotonic()
    gw.start(within=10.0)
    try:
        assert time.monotonic() - started < 10.0
        key = derive_key((tmp_path / "var" / "secret_key").read_bytes(), WEBHOOK_PURPOSE)
        body = json.dumps({"id": "q1", "from": "+14155550123", "to": "12345", "text": "STOP"})
        headers = {"Content-Type": "application/json", HEADER: sign(key, body.encode())}
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{gw.url}/v1/inbound/sms", data=body, headers=headers) as resp,
        ):
            reply = await resp.json()
        assert (200, "committed", 1) == (resp.status, reply["status"], len(reply["outbox_ids"]))
    finally:
        assert 0 == gw.stop()
