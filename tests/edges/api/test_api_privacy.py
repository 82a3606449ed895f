"""Data-subject rights over real HTTP: export, rectify, erase (GDPR art. 15-17)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
from api_helpers import call, new_key, opt_in_body
from support import CONFIG, PG_URL, SECRET, sms

from gateway.app import Gateway
from gateway.settings import Settings

_CHECK = {"sender": "12345", "program": "reminders", "channel": "sms"}


async def _subscribed(gateway: Gateway) -> str:
    key = await new_key(gateway, "admin")
    await call(gateway, "POST", "/v1/consent", key=key, json=opt_in_body("+14155550123", "a"))
    await gateway.pipeline.handle(sms("HELP"))
    return key


async def test_export_holds_everything_including_the_ledger(gateway: Gateway) -> None:
    """Art. 15: the contact, its consent, what it sent, the ledger rows with their hashes and
    evidence, the messages; the export itself is audited; an unknown contact is 422."""
    key = await _subscribed(gateway)
    status, data = await call(
        gateway,
        "POST",
        "/v1/privacy/export",
        key=key,
        json={"channel": "sms", "contact": "+14155550123"},
    )
    assert 200 == status
    assert "+14155550123" == data["contact"]["address"]
    assert [("reminders", "opted_in")] == [(c["program"], c["state"]) for c in data["consent"]]
    assert [("opt_in", "web_form")] == [(e["action"], e["method"]) for e in data["ledger"]]
    assert "2026-01" == data["ledger"][0]["evidence"]["disclosure_version"]
    assert 64 == len(data["ledger"][0]["hash"])
    assert ["", "HELP"] == [e["body"] for e in data["inbound_events"]]
    assert {"opt_in", "help"} == {m["kind"] for m in data["messages"]}
    _, log = await call(gateway, "GET", "/v1/admin/audit", key=key)
    assert "privacy.export" == log["records"][0]["action"]
    status, err = await call(
        gateway,
        "POST",
        "/v1/privacy/export",
        key=key,
        json={"channel": "sms", "contact": "+14155550999"},
    )
    assert (422, "unknown_contact") == (status, err["error"]["code"])


async def test_rectify_moves_consent_to_the_new_number_and_keeps_history(
    gateway: Gateway,
) -> None:
    """Art. 16: after a number change the gate allows the new number (the cache was told)
    and refuses the old one; the export lists the old number as history."""
    key = await _subscribed(gateway)
    _, before = await call(
        gateway, "POST", "/v1/gate/check", key=key, json={**_CHECK, "to": "+14155550123"}
    )
    assert before["allowed"]
    status, _ = await call(
        gateway,
        "POST",
        "/v1/privacy/rectify",
        key=key,
        json={"channel": "sms", "contact": "+14155550123", "new_contact": "+14155550177"},
    )
    assert 200 == status
    answers = []
    for number in ("+14155550123", "+14155550177"):
        _, answer = await call(
            gateway, "POST", "/v1/gate/check", key=key, json={**_CHECK, "to": number}
        )
        answers.append((answer["allowed"], answer["reason"]))
    assert [(False, "no_consent"), (True, "opted_in")] == answers
    _, data = await call(
        gateway,
        "POST",
        "/v1/privacy/export",
        key=key,
        json={"channel": "sms", "contact": "+14155550177"},
    )
    assert ["+14155550123"] == [a["address"] for a in data["previous_addresses"]]
    assert 1 == len(data["ledger"])


async def test_erasure_redacts_suppresses_and_the_ledger_still_verifies(
    gateway: Gateway, db: asyncpg.Connection, settings: Settings, tmp_path: Path
) -> None:
    """Art. 17: opt-outs recorded with method erasure and no reply; address pseudonymised,
    bodies and evidence redacted; `gateway audit verify` passes and counts the redactions;
    capture by others and sends are refused."""
    key = await _subscribed(gateway)
    status, done = await call(
        gateway,
        "POST",
        "/v1/privacy/erase",
        key=key,
        json={"channel": "sms", "contact": "(415) 555-0123"},
    )
    assert 200 == status
    assert 2 == len(done["ledger_seqs"])
    actions = await db.fetch("SELECT action, method, evidence FROM ledger ORDER BY seq")
    assert [("opt_in", "web_form"), ("opt_out", "erasure"), ("opt_out", "erasure")] == [
        (r["action"], r["method"]) for r in actions
    ]
    assert [None, None, None] == [r["evidence"] for r in actions]
    assert 0 == await db.fetchval("SELECT count(*) FROM contacts WHERE address LIKE '+1%'")
    assert [""] * 2 == [
        r["body"]
        for r in await db.fetch("SELECT body FROM inbound_events WHERE method <> 'erasure'")
    ]
    assert 0 == await db.fetchval("SELECT count(*) FROM outbox WHERE body <> ''")
    assert 1 == await db.fetchval("SELECT count(*) FROM suppression")

    env = {**os.environ, "GATEWAY_SECRET_KEY": SECRET, "GATEWAY_DATABASE_URL": PG_URL}
    config = tmp_path / "gw.toml"
    config.write_text(
        CONFIG.read_text().replace('schema = "consent"', f'schema = "{settings.database.schema}"')
    )
    config.with_name("senders").symlink_to(CONFIG.parent / "senders")
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "gateway", "--config", str(config), "audit", "verify"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    report = json.loads(result.stdout)
    assert (0, True, 3, 3) == (
        result.returncode,
        report["ok"],
        report["events"],
        report["redacted"],
    )

    # Once the cache's entry is gone the suppression list answers (checked on every answer
    # that would allow); capture by anyone but the person is refused (tests/edges/api/
    # test_api_erasure.py covers every path, and the person's own way back).
    assert gateway.api.suppression.contains("sms", "+14155550123", None)
    status, err = await call(
        gateway, "POST", "/v1/consent", key=key, json=opt_in_body("+14155550123", "again")
    )
    assert (422, "suppressed") == (status, err["error"]["code"])
    message = {**_CHECK, "to": "+14155550123", "body": "hello"}
    status, err = await call(gateway, "POST", "/v1/send", key=key, json=message)
    assert (422, "suppressed") == (status, err["error"]["reason"])
    _, log = await call(gateway, "GET", "/v1/admin/audit", key=key)
    assert "privacy.erase" == log["records"][0]["action"]


async def test_ledger_rows_stay_append_only_outside_redaction(db: asyncpg.Connection) -> None:
    """The trigger still refuses any other update or delete of a ledger row."""
    await db.execute(
        "INSERT INTO contacts (channel, address) VALUES ('sms', '+1'); INSERT INTO ledger"
        " VALUES (1, 1, 'sms', 's', 'p', 'opt_in', 'api', 'none', 'opted_in', now(), NULL,"
        " NULL, '{}', '\\x00', '\\x00', '\\x00')"
    )
    for sql in (
        "UPDATE ledger SET action = 'opt_out'",
        "UPDATE ledger SET evidence = NULL, method = 'x'",
        "DELETE FROM ledger",
    ):
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await db.execute(sql)
    await db.execute("UPDATE ledger SET evidence = NULL")
    assert await db.fetchval("SELECT evidence IS NULL FROM ledger")


async def test_email_contact_export_and_erasure_cover_hard_bounces(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """An email contact's hard-bounce record is in the export and gone after erasure."""
    key = await new_key(gateway, "admin")
    body = {
        **opt_in_body("ann@example.org", "e"),
        "channel": "email",
        "sender": "news@lists.acme-health.example",
        "program": "newsletter",
    }
    await call(gateway, "POST", "/v1/consent", key=key, json=body)
    await db.execute(
        "INSERT INTO undeliverable (address, list_id, status, diagnostic, dsn_key)"
        " VALUES ('ann@example.org', 'news@lists.acme-health.example', '5.1.1', 'no such user',"
        " 'dsn-1')"
    )
    subject = {"channel": "email", "contact": "ann@example.org"}
    _, data = await call(gateway, "POST", "/v1/privacy/export", key=key, json=subject)
    assert [("5.1.1", 1)] == [(b["status"], b["bounces"]) for b in data["bounces"]]
    status, _ = await call(gateway, "POST", "/v1/privacy/erase", key=key, json=subject)
    assert 200 == status
    assert 0 == await db.fetchval("SELECT count(*) FROM undeliverable")
    state = await db.fetchval("SELECT state FROM consent")
    assert "opted_out" == state
