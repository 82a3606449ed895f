"""Consent capture over real HTTP: web forms with evidence, operators, double opt-in by text
and by email link, and the API keys every one of these needs."""

from __future__ import annotations

import json
import logging
import re

import asyncpg
import pytest
from api_helpers import call, new_key, opt_in_body
from support import count_rows, sms

from gateway.app import Gateway


async def test_web_form_opt_in_keeps_its_evidence_and_is_exactly_once(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """The ledger evidence holds the disclosure version, IP, user agent and page; a retry
    with the same idempotency key is a duplicate; the gate then allows the send."""
    key = await new_key(gateway, "write", "read")
    status, body = await call(
        gateway, "POST", "/v1/consent", key=key, json=opt_in_body("(415) 555-0123", "form-1")
    )
    assert (200, "committed") == (status, body["status"])
    assert [{"program": "reminders", "from": "none", "to": "opted_in"}] == body["transitions"]
    evidence = json.loads(await db.fetchval("SELECT evidence FROM ledger"))
    assert ("2026-01", "203.0.113.9", "web_form") == (
        evidence["disclosure_version"],
        evidence["ip"],
        await db.fetchval("SELECT method FROM ledger"),
    )
    status, again = await call(
        gateway, "POST", "/v1/consent", key=key, json=opt_in_body("+14155550123", "form-1")
    )
    assert (200, "duplicate") == (status, again["status"])
    assert 1 == await count_rows(db, "ledger")
    status, answer = await call(
        gateway,
        "POST",
        "/v1/gate/check",
        key=key,
        json={"sender": "12345", "program": "reminders", "channel": "sms", "to": "+14155550123"},
    )
    assert (200, True, "opted_in") == (status, answer["allowed"], answer["reason"])


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"evidence": {"ip": "203.0.113.9"}}, "bad_request"),
        ({"method": "verbal"}, "bad_request"),  # an operator entry needs operator + reference
        ({"program": "nope"}, "unknown_program"),
        ({"contact": "12"}, "invalid_address"),
        ({"action": "maybe"}, "bad_request"),
    ],
)
async def test_incomplete_capture_is_refused_and_writes_nothing(
    gateway: Gateway, db: asyncpg.Connection, change: dict[str, object], code: str
) -> None:
    """Missing evidence, an unknown program, a bad number: 4xx with a code, no rows."""
    key = await new_key(gateway, "write")
    body = {**opt_in_body("+14155550123", "x"), **change}
    status, answer = await call(gateway, "POST", "/v1/consent", key=key, json=body)
    assert code == answer["error"]["code"]
    assert status in (400, 422)
    assert 0 == await count_rows(db, "inbound_events")


async def test_operator_records_verbal_opt_out_with_a_reference(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """A verbal opt-out entered by an operator names the operator and the call reference."""
    key = await new_key(gateway, "write")
    await call(gateway, "POST", "/v1/consent", key=key, json=opt_in_body("+14155550123", "a"))
    body = {
        **opt_in_body("+14155550123", "b"),
        "action": "opt_out",
        "method": "verbal",
        "evidence": {"operator": "agent-7", "reference": "call-2026-0042"},
    }
    status, answer = await call(gateway, "POST", "/v1/consent", key=key, json=body)
    assert (200, "opted_out") == (status, answer["transitions"][0]["to"])
    row = await db.fetchrow("SELECT method, evidence FROM ledger ORDER BY seq DESC LIMIT 1")
    assert row is not None
    assert ("verbal", "agent-7") == (row["method"], json.loads(row["evidence"])["operator"])


async def test_sms_double_opt_in_waits_for_yes(gateway: Gateway, db: asyncpg.Connection) -> None:
    """A form sign-up to the double opt-in flu program is pending with a "Reply YES" text
    queued; the gate refuses until the person texts YES."""
    key = await new_key(gateway, "write", "read")
    status, body = await call(
        gateway,
        "POST",
        "/v1/consent",
        key=key,
        json=opt_in_body("+14155550123", "f", program="flu"),
    )
    assert (200, "pending") == (status, body["transitions"][0]["to"])
    assert "Reply YES" in await db.fetchval("SELECT body FROM outbox")
    scope = {"sender": "12345", "program": "flu", "channel": "sms", "to": "+14155550123"}
    _, answer = await call(gateway, "POST", "/v1/gate/check", key=key, json=scope)
    assert (False, "pending_confirmation") == (answer["allowed"], answer["reason"])
    await gateway.pipeline.handle(sms("YES"))
    _, answer = await call(gateway, "POST", "/v1/gate/check", key=key, json=scope)
    assert (True, "opted_in") == (answer["allowed"], answer["reason"])


async def test_email_double_opt_in_link_confirms_on_post_only(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """The newsletter sign-up mails one link; a GET of it (a link scanner) changes nothing,
    the button's POST confirms, a second POST is a duplicate, an expired link gets 410."""
    key = await new_key(gateway, "write")
    body = {
        **opt_in_body("Ann@Example.ORG", "e1"),
        "channel": "email",
        "sender": "news@lists.acme-health.example",
        "program": "newsletter",
    }
    status, answer = await call(gateway, "POST", "/v1/consent", key=key, json=body)
    assert (200, "pending") == (status, answer["transitions"][0]["to"])
    mails = await db.fetch("SELECT kind, recipient, body FROM outbox")
    assert [("pending", "Ann@example.org")] == [(m["kind"], m["recipient"]) for m in mails]
    match = re.search(r"/c/(\S+)", mails[0]["body"])
    assert match is not None
    path = f"/c/{match.group(1)}"
    status, page = await call(gateway, "GET", path)
    assert (200, "pending") == (status, await db.fetchval("SELECT state FROM consent"))
    assert '<form method="post">' in page
    status, page = await call(gateway, "POST", path)
    assert (200, "opted_in") == (status, await db.fetchval("SELECT state FROM consent"))
    await call(gateway, "POST", path)
    assert 2 == await count_rows(db, "ledger")
    expired = gateway.api.tokens.issue(
        b"email\x00news@lists.acme-health.example\x00newsletter\x00Ann@example.org",
        "confirm",
        ttl_seconds=-7200,
    )
    status, _ = await call(gateway, "POST", f"/c/{expired}")
    assert 410 == status


async def test_keys_are_required_scoped_and_stored_hashed(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """No key: 401; a read key on a write route: 403; a revoked key: 401; the table holds
    no key text, only its SHA-256."""
    body = opt_in_body("+14155550123", "k")
    assert 401 == (await call(gateway, "POST", "/v1/consent", json=body))[0]
    assert 401 == (await call(gateway, "POST", "/v1/consent", key="cgk_x_nope", json=body))[0]
    read = await new_key(gateway, "read")
    status, answer = await call(gateway, "POST", "/v1/consent", key=read, json=body)
    assert (403, "forbidden") == (status, answer["error"]["code"])
    key_id, write = await gateway.api.store.create_key("ops", ["write"], actor="test")
    assert 200 == (await call(gateway, "POST", "/v1/consent", key=write, json=body))[0]
    stored = await db.fetch("SELECT key_sha256::text AS h FROM api_keys")
    # The secret is everything after "cgk_<id>_" (it may hold "_" itself: a fragment after
    # the last one can be short enough to turn up in any hex digest by chance).
    secret = write.split("_", 2)[2]
    assert not any(secret in r["h"] for r in stored)
    assert await gateway.api.store.revoke_key(key_id, actor="test")
    assert 401 == (await call(gateway, "POST", "/v1/consent", key=write, json=body))[0]


async def test_unconfirmed_double_opt_in_expires_and_a_late_yes_does_not_confirm_it(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """A sign-up still pending past the window is closed by the sweep (no reply, the reason
    in the evidence); a late YES no longer confirms it (YES then joins the default programs,
    as START would)."""
    key = await new_key(gateway, "write")
    await call(
        gateway,
        "POST",
        "/v1/consent",
        key=key,
        json=opt_in_body("+14155550123", "f", program="flu"),
    )
    assert 0 == await gateway.api.expire_pending(gateway.pipeline)
    await db.execute("UPDATE consent SET updated_at = now() - interval '73 hours'")
    assert 1 == await gateway.api.expire_pending(gateway.pipeline)
    row = await db.fetchrow("SELECT new_state, evidence FROM ledger ORDER BY seq DESC LIMIT 1")
    assert row is not None
    assert ("opted_out", "double opt-in not confirmed in time") == (
        row["new_state"],
        json.loads(row["evidence"])["reason"],
    )
    assert 1 == await count_rows(db, "outbox")  # only the first "Reply YES"
    outcome = await gateway.pipeline.handle(sms("YES"))
    assert outcome.decision is not None
    transitions = [(t.program, t.new.value) for t in outcome.decision.transitions]
    assert [("reminders", "opted_in")] == transitions


async def test_no_key_number_or_body_reaches_the_logs(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    """Invariant 8: across capture, send-through, gate, preference link and erasure, no log
    record carries the API key, the phone number or the message body."""
    caplog.set_level(logging.DEBUG)
    key = await new_key(gateway, "admin")
    number, body = "+14155550123", "Secret appointment text"
    await call(gateway, "POST", "/v1/consent", key=key, json=opt_in_body(number, "a"))
    message = {"sender": "12345", "program": "reminders", "channel": "sms", "to": number}
    await call(gateway, "POST", "/v1/send", key=key, json={**message, "body": body})
    await call(gateway, "POST", "/v1/gate/check", key=key, json=message)
    await call(
        gateway,
        "POST",
        "/v1/preferences/links",
        key=key,
        json={"channel": "sms", "contact": number},
    )
    await call(
        gateway, "POST", "/v1/privacy/erase", key=key, json={"channel": "sms", "contact": number}
    )
    await call(gateway, "POST", "/v1/consent", key="cgk_bad_guess", json=opt_in_body(number, "b"))
    text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert caplog.records
    assert (False, False, False, False) == (
        key in text,
        number in text,
        body in text,
        "cgk_bad_guess" in text,
    )


async def test_a_confirm_link_is_not_queued_after_an_opt_out_that_came_first(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """Sign-up, then an unsubscribe commits before the link mail is queued: no link mail
    (the queue checks the consent under the contact's lock), and a later opt-out still
    cancels a link mail that was queued."""
    address, news = "ann@example.org", "news@lists.acme-health.example"
    key = await new_key(gateway, "write")
    body = {**opt_in_body(address, "e2"), "channel": "email", "sender": news,
            "program": "newsletter"}  # fmt: skip
    assert 200 == (await call(gateway, "POST", "/v1/consent", key=key, json=body))[0]
    sends = gateway.api.sends
    queued = await sends.queue_notice("email", news, "newsletter", address, "Confirm: x")
    assert queued is not None
    body = {**body, "action": "opt_out", "idempotency_key": "e3"}
    assert 200 == (await call(gateway, "POST", "/v1/consent", key=key, json=body))[0]
    assert "opted_out" == await db.fetchval("SELECT state FROM consent")

    late = await sends.queue_notice("email", news, "newsletter", address, "Confirm: y")

    assert late is None
    # The sign-up's own link mail and the one queued here, both cancelled; no third.
    rows = await db.fetch("SELECT id, status FROM outbox WHERE kind = 'pending' ORDER BY id")
    assert [("cancelled", False), ("cancelled", True)] == [
        (r["status"], r["id"] == queued) for r in rows
    ]
