"""Text no database can store: NUL and lone surrogates, over real HTTP and SMTP.

PostgreSQL refuses U+0000 in text and jsonb, and UTF-8 has no lone surrogates. Such input
used to fail its commit, and a failed commit is answered as temporary (503 + Retry-After,
SMTP 451): the provider retried a ``"Stop\\u0000"`` forever and the opt-out was never
recorded. A subscriber's words are now cleaned (the evidence says what was removed);
identifiers and values a client wants kept are refused for good.
"""

from __future__ import annotations

import json
import tomllib
from typing import Any

import aiohttp
import asyncpg
from api_helpers import TWILIO_TOKEN, call, new_key, opt_in_body, with_edges
from support import CONFIG, SECRET, count_rows

from gateway.app import Gateway
from gateway.edges.http.webhooks import twilio_signature
from gateway.security.signing import HEADER, WEBHOOK_PURPOSE, derive_key, sign
from gateway.settings import Settings

KEY = derive_key(SECRET.encode(), WEBHOOK_PURPOSE)


async def _signed(gw: Gateway, body: bytes) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", HEADER: sign(KEY, body)}
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"http://127.0.0.1:{gw.http_port}/v1/inbound/sms", data=body, headers=headers
        ) as resp,  # fmt: skip
    ):
        return resp.status, await resp.json()


async def test_a_stop_with_a_nul_is_recorded_and_the_evidence_says_what_was_removed(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """`"Stop\\u0000"` over the signed webhook: 200, an opt-out in the ledger, the body kept
    without the NUL, and the evidence counting the character removed."""
    body = json.dumps({"id": "SM1", "from": "+14155550123", "to": "12345", "text": "Stop\u0000"})

    status, answer = await _signed(gateway, body.encode())

    assert (200, "committed", "opt_out_all") == (status, answer["status"], answer["intent"])
    row = await db.fetchrow("SELECT body, evidence::text AS evidence FROM inbound_events")
    assert row is not None
    assert "Stop" == row["body"]
    assert "text:1" == json.loads(row["evidence"])["removed_characters"]
    assert 2 == await count_rows(db, "ledger")


async def test_a_lone_surrogate_in_the_text_is_replaced_and_the_stop_recorded(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """JSON's `"\\ud800"` decodes to a lone surrogate: replaced by U+FFFD, still an opt-out."""
    body = b'{"id": "SM2", "from": "+14155550123", "to": "12345", "text": "STOP\\ud800"}'

    status, answer = await _signed(gateway, body)

    assert (200, "opt_out_all") == (status, answer["intent"])
    assert "STOP\ufffd" == await db.fetchval("SELECT body FROM inbound_events")


async def test_a_message_id_with_a_nul_is_refused_for_good_and_writes_nothing(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """An id that cannot be stored: 400 (the provider must not retry), nothing written."""
    body = json.dumps({"id": "SM\u00003", "from": "+14155550123", "to": "12345", "text": "STOP"})

    status, answer = await _signed(gateway, body.encode())

    assert (400, "bad_request") == (status, answer["error"]["code"])
    assert 0 == await count_rows(db, "inbound_events")


async def test_twilio_body_with_a_nul_is_recorded(
    settings: Settings, db: asyncpg.Connection
) -> None:
    """A form-encoded `Body=STOP%00` from a Twilio-compatible provider: empty TwiML, recorded."""
    configured = with_edges(settings, env={"GATEWAY_TWILIO_AUTH_TOKEN": TWILIO_TOKEN})
    async with Gateway(configured) as gw:
        form = [("MessageSid", "SM9"), ("From", "+14155550123"), ("To", "12345"),
                ("Body", "STOP\u0000")]  # fmt: skip
        path = "/v1/providers/twilio/sms"
        signature = twilio_signature(TWILIO_TOKEN, "http://127.0.0.1:8080" + path, form)
        status, _ = await call(
            gw, "POST", path, data=dict(form), headers={"X-Twilio-Signature": signature}
        )
        assert 200 == status
        assert "opt_out_all" == await db.fetchval("SELECT intent FROM inbound_events")


async def test_capture_evidence_is_cleaned_and_keys_and_bodies_are_refused(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """/v1/consent: NUL in the evidence is removed and noted; an idempotency key with a NUL
    is 400; /v1/send with a NUL in the body is 400; an admin sender definition with one is
    422. None of them a 5xx."""
    key = await new_key(gateway, "admin")
    body = opt_in_body("+14155550123", "k1")
    body["evidence"]["checkbox_text"] = "Text me\u0000 reminders"
    status, _ = await call(gateway, "POST", "/v1/consent", key=key, json=body)
    assert 200 == status
    evidence = json.loads(await db.fetchval("SELECT evidence::text FROM inbound_events"))
    assert "Text me reminders" == evidence["checkbox_text"]
    assert "evidence.checkbox_text:1" == evidence["removed_characters"]

    status, answer = await call(
        gateway, "POST", "/v1/consent", key=key, json=opt_in_body("+14155550123", "k\u00002")
    )
    assert (400, "bad_request") == (status, answer["error"]["code"])
    send = {"channel": "sms", "sender": "12345", "program": "reminders",
            "to": "+14155550123", "body": "Hello\u0000"}  # fmt: skip
    status, answer = await call(gateway, "POST", "/v1/send", key=key, json=send)
    assert (400, "bad_request") == (status, answer["error"]["code"])
    definition = tomllib.loads((CONFIG.parent / "senders" / "12345.toml").read_text())
    definition["brand"] = "Acme\u0000 Health"
    status, answer = await call(gateway, "PUT", "/v1/admin/senders/12345", key=key,
                                json=definition)  # fmt: skip
    assert (422, "invalid_sender") == (status, answer["error"]["code"])
    assert 1 == await count_rows(db, "inbound_events")
