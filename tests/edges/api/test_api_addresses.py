"""One person, one contact: every edge keys a number or address the same way (issue 11.4)."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import aiohttp
import asyncpg
import pytest
from api_helpers import call, new_key, opt_in_body
from support import PG_URL, SECRET, count_rows

from gateway.app import Gateway
from gateway.security.signing import HEADER, WEBHOOK_PURPOSE, derive_key, sign
from gateway.settings import Settings
from gateway.store.db import _migrations
from gateway.store.suppression import key_id
from keywords.model import Channel

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


async def test_migration_011_folds_email_contacts_and_carries_case_collision_opt_outs(
    settings: Settings, schema: str
) -> None:
    """Contacts written before 011: a lone mixed-case address is folded to its key; of two
    that differ only by case, one keeps the key and the other's opt-out is carried over
    through the ledger at start-up, so the gate refuses the person."""
    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"; SET search_path TO "{schema}"')
        await conn.execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for version, name, sql in _migrations():
            if version >= 11:
                break
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_migrations VALUES ($1, $2)", version, name)
        await conn.execute(
            "INSERT INTO contacts (channel, address) VALUES ('email', 'Dan@example.org'),"
            " ('email', 'carol@example.com'), ('email', 'Carol@example.com')"
        )
        await conn.execute(
            "INSERT INTO consent SELECT id, $1, 'newsletter', 'email',"
            " CASE address WHEN 'Carol@example.com' THEN 'opted_out' ELSE 'opted_in' END,"
            " 1, now(), 0 FROM contacts",
            NEWS,
        )
    finally:
        await conn.close()

    async with Gateway(settings) as gw:
        rows = await gw.pool.fetch("SELECT id, address FROM contacts ORDER BY id")
        assert ["dan@example.org", "carol@example.com", f"case-collision:{rows[2]['id']}"] == [
            r["address"] for r in rows
        ]
        ledger = await gw.pool.fetch("SELECT action, method, evidence FROM ledger")
        assert [("opt_out", "api")] == [(r["action"], r["method"]) for r in ledger]
        assert f"contact:{rows[2]['id']}" == json.loads(ledger[0]["evidence"])["from_contact"]
        answer = await gw.gate.check(NEWS, "newsletter", Channel.EMAIL, "Carol@Example.com")
        assert (False, "opted_out") == (answer.allowed, answer.reason.value)
    async with Gateway(settings) as gw:  # a second start carries nothing twice
        assert 1 == await gw.pool.fetchval("SELECT count(*) FROM ledger")


async def test_suppression_hashes_from_before_011_are_adopted_and_still_match(
    settings: Settings, schema: str
) -> None:
    """Hashes written before key ids: adopted at start-up as the current secret's key, so
    the erased number is still refused; an email hashed with its local part as written
    still matches that spelling (the documented limit: only that spelling)."""
    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"; SET search_path TO "{schema}"')
        await conn.execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for version, name, sql in _migrations():
            if version >= 11:
                break
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_migrations VALUES ($1, $2)", version, name)
        old_key = derive_key(SECRET.encode(), "suppression")
        for value in ("sms:+14155550123", "email:Carol@example.com"):
            digest = hmac.new(old_key, value.encode(), hashlib.sha256).digest()
            await conn.execute(
                "INSERT INTO suppression (channel, address_hmac, reason)"
                " VALUES ($1, $2, 'erasure')",
                value.split(":")[0],
                digest,
            )
    finally:
        await conn.close()

    async with Gateway(settings) as gw:
        kids = await gw.pool.fetch("SELECT DISTINCT key_id FROM suppression")
        assert [key_id(old_key)] == [r["key_id"] for r in kids]
        api_key = await new_key(gw, "admin")
        status, err = await call(gw, "POST", "/v1/consent", key=api_key,
                                 json=opt_in_body("+14155550123", "k"))  # fmt: skip
        assert (422, "suppressed") == (status, err["error"]["code"])
        assert gw.suppression.contains("email", "carol@example.com", "Carol@example.com")
        assert not gw.suppression.contains("email", "carol@example.com", "carol@example.com")
