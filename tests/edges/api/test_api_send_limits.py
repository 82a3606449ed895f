"""POST /v1/send over real HTTP: bodies past the segment or character cap, or holding control
characters, are refused for good (422 with a stable code) and queue nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from api_helpers import call, new_key, opt_in_body, with_edges
from support import PG_URL

from gateway.app import Gateway
from gateway.settings import Settings

_SMS = {"sender": "12345", "program": "reminders", "channel": "sms", "to": "+14155550123"}
_EMAIL = {
    "sender": "news@lists.acme-health.example",
    "program": "newsletter",
    "channel": "email",
    "to": "ann@example.org",
}


async def _opted_in(gateway: Gateway) -> str:
    key = await new_key(gateway, "send", "write")
    status, _ = await call(
        gateway, "POST", "/v1/consent", key=key, json=opt_in_body("+14155550123", "limits")
    )
    assert 200 == status
    return key


async def _outbox_sends(db: asyncpg.Connection) -> int:
    value = await db.fetchval("SELECT count(*) FROM outbox WHERE kind = 'send'")
    assert isinstance(value, int)
    return value


async def test_an_sms_body_past_ten_segments_is_refused_and_ten_are_sent(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """By default 10 segments: 1,530 GSM-7 characters queue, 1,531 are 422 body_too_long;
    670 UCS-2 units (an emoji counts two) queue, 671 do not; a 60,000-character body (which
    the old code queued) is refused too. Only the accepted ones reach the outbox."""
    key = await _opted_in(gateway)
    before = await _outbox_sends(db)
    cases = [
        ("a" * 1_530, 202),
        ("a" * 1_531, 422),
        ("é" * 1_530, 202),  # é is in GSM 03.38
        ("ж" * 670, 202),
        ("ж" * 669 + "👍", 422),  # 671 UTF-16 units
        ("x" * 60_000, 422),
        ("{}" * 765, 422),  # extension characters take two septets: 3,060
    ]
    for body, expected in cases:
        status, answer = await call(
            gateway, "POST", "/v1/send", key=key, json={**_SMS, "body": body}
        )
        assert expected == status, (len(body), answer)
        if status == 422:
            assert "body_too_long" == answer["error"]["code"]
            assert body[:20] not in answer["error"]["message"]
    assert 3 == await _outbox_sends(db) - before


async def test_control_characters_in_a_body_are_refused(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """An escape sequence, a bell, a C1 control or a bidi override is 422 invalid_body and
    queues nothing; tabs, line breaks and the right-to-left mark are kept."""
    key = await _opted_in(gateway)
    before = await _outbox_sends(db)
    for body in ("\x1b[31mred", "ding\x07", "next\x85line", "pay \u202egnp.exe", "\u2066x"):
        status, answer = await call(
            gateway, "POST", "/v1/send", key=key, json={**_SMS, "body": body}
        )
        assert (422, "invalid_body") == (status, answer["error"]["code"]), repr(body)
    assert before == await _outbox_sends(db)
    status, _ = await call(
        gateway,
        "POST",
        "/v1/send",
        key=key,
        json={**_SMS, "body": "Line one\r\nLine two\tand \u200fשלום"},
    )
    assert 202 == status


@pytest.fixture
async def capped(settings: Settings) -> AsyncIterator[Gateway]:
    """A gateway whose [api] caps sends at 2 segments and 100 email characters."""
    configured = with_edges(settings, api={"max_send_segments": 2, "max_send_email_chars": 100})
    async with Gateway(configured) as gw:
        yield gw


async def test_the_caps_are_configurable_and_checked_before_consent(capped: Gateway) -> None:
    """With max_send_segments = 2, 307 GSM-7 characters (three parts) are refused; with
    max_send_email_chars = 100 a 101-character email body is refused before the gate is
    asked (no consent exists for it), and a 100-character one gets the gate's answer."""
    key = await _opted_in(capped)
    status, answer = await call(
        capped, "POST", "/v1/send", key=key, json={**_SMS, "body": "a" * 307}
    )
    assert (422, "body_too_long") == (status, answer["error"]["code"])
    status, answer = await call(
        capped, "POST", "/v1/send", key=key, json={**_SMS, "body": "a" * 306}
    )
    assert (202, "queued") == (status, answer["status"])
    status, answer = await call(
        capped, "POST", "/v1/send", key=key, json={**_EMAIL, "body": "b" * 101}
    )
    assert (422, "body_too_long") == (status, answer["error"]["code"])
    status, answer = await call(
        capped, "POST", "/v1/send", key=key, json={**_EMAIL, "body": "b" * 100}
    )
    assert (422, "send_refused") == (status, answer["error"]["code"])
    conn = await asyncpg.connect(
        PG_URL, server_settings={"search_path": capped.settings.database.schema}
    )
    try:
        assert 1 == await _outbox_sends(conn)
    finally:
        await conn.close()
