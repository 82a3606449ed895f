"""The audit API beside the report: reported sends, the batch gate's decision ids, the review
queue and the lists out, over real HTTP."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import asyncpg
from audit_http import call, fetch, new_key, opt_in_body
from support import sms

from gateway.app import Gateway

SCOPE = {"sender": "12345", "program": "reminders", "channel": "sms"}


def _report(message_id: str, to: str = "+14155550123", **extra: Any) -> dict[str, Any]:
    return {
        **SCOPE,
        "recipient": to,
        "message_id": message_id,
        "sent_at": "2026-11-20T12:00:00Z",
        **extra,
    }


async def test_reported_sends_are_idempotent_and_conflicts_keep_the_first(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """The same report twice is one row; the same id with other content is a conflict; a
    report that cannot be read is invalid with a reason and the rest are still recorded."""
    key = await new_key(gateway, "send")
    body = {
        "reports": [
            _report("m-1"),
            _report("m-2", to="(415) 555-0124"),
            _report("m-3", sender="nobody"),
            _report("m-1"),
        ]
    }
    status, result = await call(gateway, "POST", "/v1/sends", key=key, json=body)
    assert 200 == status
    assert ["recorded", "recorded", "invalid", "duplicate"] == [
        r["status"] for r in result["results"]
    ]
    assert "unknown_sender" == result["results"][2]["reason"]
    _, again = await call(
        gateway,
        "POST",
        "/v1/sends",
        key=key,
        json={"reports": [_report("m-1"), _report("m-2", to="+14155550999")]},
    )
    assert ["duplicate", "conflict"] == [r["status"] for r in again["results"]]
    rows = await db.fetch("SELECT message_id, recipient FROM send_reports ORDER BY id")
    assert [("m-1", "+14155550123"), ("m-2", "+14155550124")] == [tuple(r) for r in rows]
    status, _ = await call(
        gateway, "POST", "/v1/sends", key=await new_key(gateway, "read"), json=body
    )
    assert 403 == status


async def test_batch_gate_answers_are_recorded_by_position(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """The batch answer names a decision; its stored bytes give each recipient's answer."""
    from gateway.store.send_reports import answer_at

    key = await new_key(gateway, "admin")
    await call(gateway, "POST", "/v1/consent", key=key, json=opt_in_body("+14155550123", "x"))
    await gateway.pipeline.handle(sms("STOP", contact="+14155550124"))
    to = ["+14155550123", "+14155550124", "not a number", "+14155550125"]
    _, gate = await call(gateway, "POST", "/v1/gate/batch", key=key, json={**SCOPE, "to": to})
    row = await db.fetchrow("SELECT * FROM gate_decisions WHERE id = $1", gate["decision_id"])
    assert row is not None
    assert (4, "12345", "reminders") == (row["recipients"], row["sender"], row["program"])
    answers = [answer_at(bytes(row["answers"]), i) for i in range(4)]
    assert [r["reason"] for r in gate["results"]] == answers
    assert ["opted_in", "opted_out", "invalid_address", "no_consent"] == answers


async def test_the_review_queue_records_findings_and_changes_no_consent(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """A reversed opt-out stays an opt-out; each finding is final and audited."""
    key = await new_key(gateway, "admin")
    await call(gateway, "POST", "/v1/consent", key=key, json=opt_in_body("+14155550123", "x"))
    flagged = await gateway.pipeline.handle(sms("stop please", contact="+14155550123"))
    exact = await gateway.pipeline.handle(sms("STOP", contact="+14155550124"))
    status, queue = await call(gateway, "GET", "/v1/admin/reviews", key=key)
    assert 200 == status
    assert [flagged.inbound_id] == [i["inbound_id"] for i in queue["items"]]
    assert "stop please" == queue["items"][0]["text"]
    path = f"/v1/admin/reviews/{flagged.inbound_id}"
    status, done = await call(
        gateway,
        "POST",
        path,
        key=key,
        json={"decision": "reverse", "note": "asked about one visit"},
    )
    assert 200 == status
    assert (False, "reversed") == (done["consent_changed"], done["decision"])
    assert list(flagged.ledger_seqs) == done["ledger_seqs"]
    assert "opted_out" == await db.fetchval(
        "SELECT state FROM consent WHERE program = 'reminders' AND contact_id ="
        " (SELECT contact_id FROM inbound_events WHERE id = $1)",
        flagged.inbound_id,
    )
    status, err = await call(
        gateway, "POST", path, key=key, json={"decision": "confirm", "note": "x"}
    )
    assert (422, "already_reviewed") == (status, err["error"]["code"])
    status, err = await call(
        gateway,
        "POST",
        f"/v1/admin/reviews/{exact.inbound_id}",
        key=key,
        json={"decision": "confirm", "note": "x"},
    )
    assert (422, "not_flagged") == (status, err["error"]["code"])
    _, queue = await call(gateway, "GET", "/v1/admin/reviews?status=decided", key=key)
    assert ["reversed"] == [i["decision"] for i in queue["items"]]
    _, log = await call(gateway, "GET", "/v1/admin/audit", key=key)
    assert "review.reverse" == log["records"][0]["action"]


async def test_lists_stream_as_csv_and_json(gateway: Gateway) -> None:
    """Opt-outs and the suppression list of one sender, since a date; the erased are counted
    as hashes, never listed; someone still in a program is not suppressed."""
    admin = await new_key(gateway, "admin")
    read = await new_key(gateway, "read")
    await call(gateway, "POST", "/v1/consent", key=admin, json=opt_in_body("+14155550123", "a"))
    await gateway.pipeline.handle(sms("STOP", contact="+14155550124"))
    await gateway.pipeline.handle(sms("STOP FLU", contact="+14155550123"))
    await gateway.pipeline.handle(sms("STOP", contact="+14155550125"))
    await call(
        gateway,
        "POST",
        "/v1/privacy/erase",
        key=admin,
        json={"channel": "sms", "contact": "+14155550125"},
    )
    base = "?sender=12345&channel=sms"
    status, content_type, body = await fetch(
        gateway, "GET", f"/v1/exports/opt-outs{base}", key=read
    )
    assert (200, "text/csv") == (status, content_type)
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert [("+14155550123", "flu"), ("+14155550124", "flu"), ("+14155550124", "reminders")] == [
        (r["address"], r["program"]) for r in rows
    ]
    _, _, body = await fetch(gateway, "GET", f"/v1/exports/suppression{base}&format=json", key=read)
    listed = json.loads(body)
    assert 1 == listed["erased_entries_not_listed"]
    assert [("+14155550124", "opted_out")] == [(r["address"], r["reason"]) for r in listed["rows"]]
    _, _, body = await fetch(
        gateway, "GET", f"/v1/exports/opt-outs{base}&since=2999-01-01", key=read
    )
    assert "address,program,opted_out_at,method,last_seq\r\n" == body.decode()
    status, _, _ = await fetch(gateway, "GET", f"/v1/admin/exports/consent{base}", key=read)
    assert 403 == status
    _, _, body = await fetch(gateway, "GET", f"/v1/admin/exports/consent{base}", key=admin)
    consent = list(csv.DictReader(io.StringIO(body.decode())))
    (joined,) = [
        c for c in consent if (c["address"], c["program"]) == ("+14155550123", "reminders")
    ]
    assert ("opted_in", "2026-01") == (
        joined["state"],
        json.loads(joined["evidence"])["disclosure_version"],
    )
    status, err = await call(
        gateway, "GET", "/v1/exports/opt-outs?sender=nobody&channel=sms", key=read
    )
    assert (422, "unknown_sender") == (status, err["error"]["code"])
