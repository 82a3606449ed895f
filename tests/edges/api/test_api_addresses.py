"""One person, one contact: every edge keys a number or address the same way (issue 11.4)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import asyncpg
import pytest
from api_helpers import call, new_key, opt_in_body
from support import SECRET, count_rows

from gateway.app import Gateway
from gateway.security.signing import HEADER, WEBHOOK_PURPOSE, derive_key, sign

KEY = derive_key(SECRET.encode(), WEBHOOK_PURPOSE)
NEWS = "news@lists.acme-health.example"
_CHECK = {"sender": "12345", "program": "reminders", "channel": "sms"}


async def _mo(gateway: Gateway, sms_id: str, number: str, text: str) -> tuple[int, Any]:
    """One signed inbound SMS (``POST /v1/inbound/sms``), as a provider sends it."""
    body = json.dumps({"id": sms_id, "from": number, "to": "12345", "text": text}).encode()
    headers = {"Content-Type": "application/json", HEADER: sign(KEY, body)}
    url = f"http://127.0.0.1:{gateway.http_port}/v1/inbound/sms"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as r,
    ):
        return r.status, await r.json()


async def test_a_number_in_arabic_indic_digits_is_the_same_person(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """START from +14155550125, then STOP written with Arabic-Indic digits: one contact,
    opted out, and the confirmation goes to the ASCII E.164 number."""
    assert 200 == (await _mo(gateway, "m1", "+14155550125", "START"))[0]
    status, body = await _mo(gateway, "m2", "+14155٥٥٠١٢٥", "STOP")

    assert (200, "committed") == (status, body["status"])
    assert ["+14155550125"] == [
        r["address"] for r in await db.fetch("SELECT address FROM contacts")
    ]
    assert {"opted_out"} == {r["state"] for r in await db.fetch("SELECT state FROM consent")}
    recipients = await db.fetch("SELECT recipient FROM outbox WHERE id = ANY($1::bigint[])",
                                body["outbox_ids"])  # fmt: skip
    assert ["+14155550125"] == [r["recipient"] for r in recipients]
    api_key = await new_key(gateway, "read")
    _, answer = await call(gateway, "POST", "/v1/gate/check", key=api_key,
                           json={**_CHECK, "to": "+14155٥٥٠١٢٥"})  # fmt: skip
    assert (False, "opted_out") == (answer["allowed"], answer["reason"])


@pytest.mark.parametrize("number", ["+1 (415) CALL-NOW", "+14155550123☎", "+1415555\u200b0123"])
async def test_letters_and_symbols_in_a_number_are_refused_and_write_nothing(
    gateway: Gateway, db: asyncpg.Connection, number: str
) -> None:
    """A vanity number (phonenumbers would make digits of its letters) or one with symbols
    gets a permanent 422 invalid_address, and nothing is recorded."""
    status, body = await _mo(gateway, "m1", number, "START")
    assert (422, "invalid_address") == (status, body["error"]["code"])
    assert (0, 0) == (await count_rows(db, "contacts"), await count_rows(db, "inbound_events"))


async def test_an_opt_out_from_a_case_variant_reaches_the_contact_and_mail_keeps_its_spelling(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """carol@example.com signs up; 'Carol@Example.com' opting out is the same contact (local
    parts match case-insensitively); a message to 'CAROL@example.com' is refused, and the
    confirmation mail of a sign-up goes to the spelling the person gave."""
    api_key = await new_key(gateway, "admin")
    scope = {"channel": "email", "sender": NEWS, "program": "newsletter"}
    signup = {**opt_in_body("Carol.Smith@Example.com", "s1"), **scope}
    status, _ = await call(gateway, "POST", "/v1/consent", key=api_key, json=signup)
    assert 200 == status
    leave = {**signup, "contact": "carol.smith@EXAMPLE.COM", "action": "opt_out",
             "idempotency_key": "s2"}  # fmt: skip
    status, _ = await call(gateway, "POST", "/v1/consent", key=api_key, json=leave)
    assert 200 == status

    contacts = await db.fetch("SELECT address FROM contacts")
    assert ["carol.smith@example.com"] == [r["address"] for r in contacts]
    assert "opted_out" == await db.fetchval("SELECT state FROM consent")
    mails = await db.fetch("SELECT recipient FROM outbox WHERE kind = 'pending'")
    assert ["Carol.Smith@example.com"] == [r["recipient"] for r in mails]
    message = {**scope, "to": "CAROL.SMITH@example.com", "body": "hello"}
    status, err = await call(gateway, "POST", "/v1/send", key=api_key, json=message)
    assert (422, "opted_out") == (status, err["error"]["reason"])


@pytest.mark.parametrize("address", ["a@-.com", "a..b@example.com", ".a@example.com"])
async def test_malformed_addresses_are_refused_by_capture_and_send(
    gateway: Gateway, db: asyncpg.Connection, address: str
) -> None:
    """Addresses the old pattern let through are refused: capture 422 invalid_address, send
    422 send_refused (reason invalid_address); nothing is written or queued."""
    api_key = await new_key(gateway, "admin")
    scope = {"channel": "email", "sender": NEWS, "program": "newsletter"}
    body = {**opt_in_body(address, "x"), **scope}
    status, err = await call(gateway, "POST", "/v1/consent", key=api_key, json=body)
    assert (422, "invalid_address") == (status, err["error"]["code"])
    message = {**scope, "to": address, "body": "hello"}
    status, err = await call(gateway, "POST", "/v1/send", key=api_key, json=message)
    assert (422, "invalid_address") == (status, err["error"]["reason"])
    assert (0, 0) == (await count_rows(db, "contacts"), await count_rows(db, "outbox"))
