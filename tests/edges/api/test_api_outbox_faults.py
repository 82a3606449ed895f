"""One row never stops the outbox: a provider's odd answer or a sender's bug fails or
retries that row, with its reason stored, and every later row still leaves."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiohttp import web
from api_helpers import TWILIO_SID, TWILIO_TOKEN, twilio_messages, with_edges
from support import eventually, sms

from gateway.app import Gateway
from gateway.logs import JsonFormatter
from gateway.senders.base import OutboxRow
from gateway.settings import OutboxSettings, Settings

FAST_OUTBOX = OutboxSettings(
    poll_interval_seconds=0.05, backoff_base_seconds=30.0, backoff_max_seconds=30.0
)


class OddProvider:
    """A Twilio-compatible Messages.json whose first answer is 201 with a body that is not
    UTF-8; later answers are ordinary JSON."""

    def __init__(self) -> None:
        self.bodies: list[str] = []
        self.url = ""

    async def messages(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.bodies.append(str(form["To"]))
        if len(self.bodies) == 1:
            return web.Response(status=201, body=b"\xff\xfe{\x00garbage", content_type="text/x")
        return web.json_response({"sid": f"SM{len(self.bodies)}"}, status=201)


@pytest.fixture
async def odd_provider() -> AsyncIterator[OddProvider]:
    """The provider on an ephemeral port."""
    provider = OddProvider()
    async with twilio_messages(provider.messages) as provider.url:
        yield provider


async def _statuses(db: asyncpg.Connection) -> list[tuple[str, str | None]]:
    rows = await db.fetch("SELECT status, provider_ref FROM outbox ORDER BY id")
    return [(r["status"], r["provider_ref"]) for r in rows]


async def _until_sent(db: asyncpg.Connection, count: int) -> None:
    async def sent() -> bool:
        return bool(await db.fetchval("SELECT count(*) FROM outbox WHERE status = 'sent'") >= count)

    await eventually(sent, timeout=15, message=f"fewer than {count} rows sent")


async def test_a_201_with_a_body_that_is_not_utf8_is_sent_and_the_worker_goes_on(
    settings: Settings, odd_provider: OddProvider, db: asyncpg.Connection
) -> None:
    """The provider took the first confirmation (201) but its body cannot be decoded: the
    row is sent (resending would text the person twice), and the second STOP's
    confirmation still leaves."""
    configured = with_edges(
        settings,
        env={"GATEWAY_TWILIO_AUTH_TOKEN": TWILIO_TOKEN},
        providers={
            "twilio": {
                "base_url": odd_provider.url,
                "account_sid": TWILIO_SID,
                "senders": ["12345"],
            }
        },
    )
    configured = dataclass_outbox(configured)
    async with Gateway(configured) as gw:
        await gw.pipeline.handle(sms("STOP", contact="+14155550123"))
        gw.outbox.wake()
        await _until_sent(db, 1)
        await gw.pipeline.handle(sms("STOP", contact="+14155550124"))
        gw.outbox.wake()
        await _until_sent(db, 2)

        assert [("sent", None), ("sent", "SM2")] == await _statuses(db)
        assert ["+14155550123", "+14155550124"] == odd_provider.bodies
        assert gw.supervisor.running("outbox")


class BuggySender:
    """An SMS sender with a bug for one recipient (a fault no real peer can cause)."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def available(self) -> bool:
        return True

    async def send(self, row: OutboxRow) -> str | None:
        if row.recipient.endswith("23"):
            raise KeyError("a bug in a sender")
        self.sent.append(row.recipient)
        return "ok"


async def test_an_unexpected_error_in_a_sender_retries_that_row_only(
    settings: Settings, db: asyncpg.Connection
) -> None:
    """A sender that raises something other than SendError: that row goes back to queued
    with the reason stored in last_error, and the next row is sent."""
    sender = BuggySender()
    async with Gateway(dataclass_outbox(settings), senders={"sms": sender}) as gw:
        await gw.pipeline.handle(sms("STOP", contact="+14155550123"))
        await gw.pipeline.handle(sms("STOP", contact="+14155550124"))
        gw.outbox.wake()
        await _until_sent(db, 1)

        async def failed() -> bool:
            query = "SELECT last_error FROM outbox WHERE recipient LIKE '%23'"
            return await db.fetchval(query) is not None

        await eventually(failed, message="the failing row's reason was never stored")

        row = await db.fetchrow(
            "SELECT status, attempts, last_error FROM outbox WHERE recipient LIKE '%23'"
        )
        assert row is not None
        assert ("queued", 1) == (row["status"], row["attempts"])
        assert "unexpected KeyError: 'a bug in a sender'" == row["last_error"]
        assert ["+14155550124"] == sender.sent
        assert gw.supervisor.running("outbox")


def dataclass_outbox(settings: Settings) -> Settings:
    """``settings`` with a fast-polling outbox whose retries wait long (out of the test)."""
    return dataclasses.replace(settings, outbox=FAST_OUTBOX)


@pytest.fixture
async def refusing_provider() -> AsyncIterator[str]:
    """A Twilio-compatible Messages.json that refuses every message as Twilio refuses an
    unsubscribed recipient (400, code 21610, the number in its message); yields its URL."""

    async def messages(request: web.Request) -> web.Response:
        form = await request.post()
        text = f"Attempt to send to unsubscribed recipient {form.get('To')!s}"
        return web.json_response({"code": 21610, "message": text, "status": 400}, status=400)

    async with twilio_messages(messages) as url:
        yield url


async def test_a_failed_send_is_logged_with_its_reason_and_a_masked_recipient(
    settings: Settings,
    refusing_provider: str,
    db: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The provider refuses the confirmation for good: the row fails, and its one "outbox
    send failed" line says why (status and code) and names the recipient only masked."""
    configured = with_edges(
        settings,
        env={"GATEWAY_TWILIO_AUTH_TOKEN": TWILIO_TOKEN},
        providers={
            "twilio": {
                "base_url": refusing_provider,
                "account_sid": TWILIO_SID,
                "senders": ["12345"],
            }
        },
    )
    caplog.set_level(logging.WARNING, logger="gateway.outbox")
    async with Gateway(dataclass_outbox(configured)) as gw:
        await gw.pipeline.handle(sms("STOP", contact="+14155550123"))
        gw.outbox.wake()
        await eventually(
            lambda: [r for r in caplog.records if r.getMessage() == "outbox send failed"],
            message="no 'outbox send failed' record",
        )

    [record] = [r for r in caplog.records if r.getMessage() == "outbox send failed"]
    line = json.loads(JsonFormatter().format(record))
    assert ("provider refused: 400 code 21610", "+1********23", True) == (
        line["reason"],
        line["recipient"],
        line["final"],
    )
    assert "4155550123" not in json.dumps(line)
    assert [("failed", None)] == await _statuses(db)
