"""Send-through and the batch gate over real HTTP."""

from __future__ import annotations

import io
import time

import aiohttp
import asyncpg
import orjson
from api_helpers import call, new_key, opt_in_body
from support import sms

from gateway.app import Gateway

_SCOPE = {"sender": "12345", "program": "reminders", "channel": "sms"}


async def test_send_through_refuses_without_consent_and_queues_with_it(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """No consent: 422 send_refused / no_consent; opted in: 202 queued; after STOP the queued
    message is cancelled in the opt-out's own transaction and the next send is refused."""
    key = await new_key(gateway, "send", "write")
    message = {**_SCOPE, "to": "+14155550123", "body": "Your appointment is at 10:00"}
    status, answer = await call(gateway, "POST", "/v1/send", key=key, json=message)
    assert (422, "send_refused", "no_consent") == (
        status,
        answer["error"]["code"],
        answer["error"]["reason"],
    )
    await call(gateway, "POST", "/v1/consent", key=key, json=opt_in_body("+14155550123", "a"))
    status, answer = await call(gateway, "POST", "/v1/send", key=key, json=message)
    assert (202, "queued") == (status, answer["status"])
    await gateway.pipeline.handle(sms("STOP"))
    row = await db.fetchrow(
        "SELECT status, last_error FROM outbox WHERE id = $1", answer["outbox_id"]
    )
    assert row is not None
    assert ("cancelled", "recipient opted out") == (row["status"], row["last_error"])
    status, answer = await call(gateway, "POST", "/v1/send", key=key, json=message)
    assert (422, "opted_out") == (status, answer["error"]["reason"])


async def test_send_needs_the_send_scope(gateway: Gateway) -> None:
    """A read-only key cannot send."""
    key = await new_key(gateway, "read")
    message = {**_SCOPE, "to": "+14155550123", "body": "hi"}
    assert 403 == (await call(gateway, "POST", "/v1/send", key=key, json=message))[0]


async def test_batch_gate_streams_100000_answers_in_order(gateway: Gateway) -> None:
    """100,000 recipients in one request: every answer, in input order, with the one
    opted-in number allowed and every other refused for its own reason."""
    key = await new_key(gateway, "read", "write")
    await call(gateway, "POST", "/v1/consent", key=key, json=opt_in_body("+14155550123", "a"))
    recipients = [f"+1415{n:07d}" for n in range(100_000)]
    recipients[77_777] = "+14155550123"
    recipients[42] = "not a number"
    started = time.perf_counter()
    url = f"http://127.0.0.1:{gateway.http_port}/v1/gate/batch"
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            url,
            data=io.BytesIO(orjson.dumps({**_SCOPE, "to": recipients})),
            headers={"Authorization": f"Bearer {key}"},
        ) as resp,
    ):
        status = resp.status
        chunked = resp.headers.get("Transfer-Encoding") == "chunked"
        raw = orjson.loads(await resp.read())
        assert 200 == status, raw
        results = raw["results"]
    assert (200, True, 100_000) == (status, chunked, len(results))
    allowed = [i for i, r in enumerate(results) if r["allowed"]]
    assert [recipients.index("+14155550123")] == allowed
    assert "invalid_address" == results[42]["reason"]
    assert {"no_consent", "invalid_address", "opted_in"} == {r["reason"] for r in results}
    assert time.perf_counter() - started < 30
