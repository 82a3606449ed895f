"""Twilio-compatible webhooks and the HTTP SMS provider, over real HTTP both ways."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from api_helpers import (
    TWILIO_SID,
    TWILIO_TOKEN,
    call,
    new_key,
    opt_in_body,
    twilio_messages,
    with_edges,
)
from support import count_rows, eventually

from gateway.app import Gateway
from gateway.edges.http.webhooks import EMPTY_TWIML, twilio_signature
from gateway.senders.base import OutboxRow, SendError
from gateway.senders.http_provider import HttpSmsProvider, RoutingSender
from gateway.settings import Settings


class FakeTwilio:
    """A local Messages.json endpoint recording what the gateway posted."""

    def __init__(self) -> None:
        self.posts: asyncio.Queue[tuple[str, dict[str, str], str]] = asyncio.Queue()
        self.url = ""

    async def messages(self, request: web.Request) -> web.Response:
        form = await request.post()
        auth = request.headers.get("Authorization", "")
        self.posts.put_nowait((request.path, {k: str(v) for k, v in form.items()}, auth))
        return web.json_response({"sid": f"SM{self.posts.qsize():032d}", "status": "queued"})


@pytest.fixture
async def fake_twilio() -> AsyncIterator[FakeTwilio]:
    """The provider's REST API on an ephemeral port."""
    fake = FakeTwilio()
    async with twilio_messages(fake.messages) as fake.url:
        yield fake


@pytest.fixture
async def twilio_gateway(settings: Settings, fake_twilio: FakeTwilio) -> AsyncIterator[Gateway]:
    """A gateway whose short code 12345 replies through the fake provider."""
    configured = with_edges(
        settings,
        env={"GATEWAY_TWILIO_AUTH_TOKEN": TWILIO_TOKEN},
        providers={
            "twilio": {
                "base_url": fake_twilio.url,
                "account_sid": TWILIO_SID,
                "public_url": "https://gw.example.com",
                "senders": ["12345"],
            }
        },
    )
    async with Gateway(configured) as gw:
        yield gw


def _form(**fields: str) -> dict[str, str]:
    base = {
        "MessageSid": "SM1",
        "AccountSid": TWILIO_SID,
        "From": "+14155550123",
        "To": "12345",
        "Body": "STOP",
    }
    return {**base, **fields}


async def _post(gateway: Gateway, form: dict[str, str], signature: str | None = None) -> Any:
    path = "/v1/providers/twilio/sms"
    sig = signature or twilio_signature(
        TWILIO_TOKEN, "https://gw.example.com" + path, list(form.items())
    )
    return await call(gateway, "POST", path, data=form, headers={"X-Twilio-Signature": sig})


def test_signature_matches_twilios_documented_example() -> None:
    """The example from Twilio's webhook-security docs gives its published signature."""
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+12349013030",
        "Digits": "1234",
        "From": "+12349013030",
        "To": "+18005551212",
    }
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert "0/KCTR6DLpKmkAf8muzZqo1nDgQ=" == twilio_signature("12345", url, list(params.items()))


async def test_signed_stop_is_recorded_and_confirmed_through_the_provider(
    twilio_gateway: Gateway, fake_twilio: FakeTwilio, db: asyncpg.Connection
) -> None:
    """A signed STOP answers empty TwiML after the commit; the one confirmation leaves by the
    provider's Messages.json with basic auth; a Twilio retry is a duplicate."""
    status, body = await _post(twilio_gateway, _form())
    assert (200, EMPTY_TWIML) == (status, body)
    assert 2 == await count_rows(db, "ledger")
    twilio_gateway.outbox.wake()
    path, form, auth = await asyncio.wait_for(fake_twilio.posts.get(), 10)
    assert f"/2010-04-01/Accounts/{TWILIO_SID}/Messages.json" == path
    assert ("+14155550123", "12345") == (form["To"], form["From"])
    assert "unsubscribed" in form["Body"]
    assert auth.startswith("Basic ")
    assert (200, EMPTY_TWIML) == await _post(twilio_gateway, _form())
    assert 1 == await count_rows(db, "outbox")


async def test_provider_handled_opt_out_is_recorded_without_a_second_confirmation(
    twilio_gateway: Gateway, db: asyncpg.Connection
) -> None:
    """With OptOutType=STOP Twilio already replied: the ledger records the opt-out (even for
    a word our catalog does not know) and no reply is queued."""
    status, _ = await _post(twilio_gateway, _form(Body="Arrêtez", OptOutType="STOP"))
    assert 200 == status
    rows = await db.fetch("SELECT action, method FROM ledger ORDER BY seq")
    assert [("opt_out", "sms_keyword"), ("opt_out", "sms_keyword")] == [tuple(r) for r in rows]
    assert 0 == await count_rows(db, "outbox")


@pytest.mark.parametrize("signature", ["", "bm90IGEgc2lnbmF0dXJl"])
async def test_forged_webhook_is_refused_and_writes_nothing(
    twilio_gateway: Gateway, db: asyncpg.Connection, signature: str
) -> None:
    """A missing or wrong X-Twilio-Signature gets 401 and no row is written."""
    status, body = await _post(twilio_gateway, _form(), signature=signature or "x")
    assert (401, "bad_signature") == (status, body["error"]["code"])
    assert 0 == await count_rows(db, "inbound_events")


async def test_tampered_body_is_refused(twilio_gateway: Gateway) -> None:
    """A signature over other fields (the body was changed in flight) does not verify."""
    signed = _form()
    sig = twilio_signature(
        TWILIO_TOKEN, "https://gw.example.com/v1/providers/twilio/sms", list(signed.items())
    )
    status, _ = await _post(twilio_gateway, _form(Body="START"), signature=sig)
    assert 401 == status


@pytest.mark.parametrize(
    ("status", "temporary"), [(429, True), (500, True), (503, True), (400, False), (401, False)]
)
async def test_provider_errors_are_temporary_or_permanent(status: int, temporary: bool) -> None:
    """429 and 5xx are retried by the outbox; other 4xx (Twilio's 21610 among them) fail the
    row for good, since the same request cannot succeed."""

    async def refuse(_request: web.Request) -> web.Response:
        return web.json_response({"code": 21610, "message": "unsubscribed"}, status=status)

    row = OutboxRow(1, "sms", "12345", None, "+14155550123", "opt_out", "en", "bye", 1)
    async with twilio_messages(refuse) as url, aiohttp.ClientSession() as session:
        provider = HttpSmsProvider(
            session,
            base_url=url,
            account_sid=TWILIO_SID,
            auth_token=TWILIO_TOKEN,
            timeout_seconds=5,
        )
        with pytest.raises(SendError) as caught:
            await provider.send(row)
    assert temporary == caught.value.temporary


async def test_send_through_leaves_by_the_provider(
    twilio_gateway: Gateway, fake_twilio: FakeTwilio, db: asyncpg.Connection
) -> None:
    """A message accepted by POST /v1/send is sent by the outbox through the provider and
    marked sent with the provider's sid."""
    key = await new_key(twilio_gateway, "write", "send")
    await call(
        twilio_gateway, "POST", "/v1/consent", key=key, json=opt_in_body("+14155550123", "a")
    )
    while not fake_twilio.posts.empty():
        fake_twilio.posts.get_nowait()
    message = {
        "sender": "12345",
        "program": "reminders",
        "channel": "sms",
        "to": "+14155550123",
        "body": "Your appointment is at 10:00",
    }
    status, answer = await call(twilio_gateway, "POST", "/v1/send", key=key, json=message)
    assert 202 == status
    while True:
        _, form, _ = await asyncio.wait_for(fake_twilio.posts.get(), 10)
        if form["Body"] == "Your appointment is at 10:00":
            break

    async def sent_row() -> asyncpg.Record | None:
        sql = "SELECT status, provider_ref FROM outbox WHERE id = $1"
        row = await db.fetchrow(sql, answer["outbox_id"])
        return row if row is not None and row["status"] == "sent" else None

    row = await eventually(sent_row, message="the row was not marked sent")
    assert row["provider_ref"].startswith("SM")


class _Recorder:
    """An outbound sender that records the rows it was given."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.rows: list[int] = []

    def available(self) -> bool:
        return True

    async def send(self, row: OutboxRow) -> str | None:
        self.rows.append(row.id)
        return self.name


async def test_sms_replies_are_routed_per_sender() -> None:
    """Routed senders leave by the provider, the others by the fallback (the SMPP bind);
    with no fallback an unrouted row waits (temporary error, retried)."""
    provider, smpp = _Recorder("provider"), _Recorder("smpp")
    router = RoutingSender({"12345": provider}, smpp)

    def row(ident: int, sender: str) -> OutboxRow:
        return OutboxRow(ident, "sms", sender, None, "+14155550123", "help", "en", "hi", 1)

    refs = [await router.send(row(1, "12345")), await router.send(row(2, "67890"))]
    assert (["provider", "smpp"], [1], [2]) == (refs, provider.rows, smpp.rows)
    with pytest.raises(SendError) as caught:
        await RoutingSender({"12345": provider}, None).send(row(3, "67890"))
    assert caught.value.temporary
