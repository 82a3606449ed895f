"""Consent import from listmonk, Mailchimp and Twilio layouts through the pipeline: evidence
on every event, a re-run changes nothing, a dry run writes nothing, erased addresses and
opted-out people are never subscribed by a file."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from audit_http import call, new_key
from support import PG_URL, sms

from gateway.app import Gateway
from gateway.app.consent_import import ImportPlan, Runtime, open_runtime, run_import
from gateway.audit.importers import BytesCounter, ImportRow, Skipped, parse, parse_time
from gateway.settings import Settings
from keywords.model import Channel

LIST = "news@lists.acme-health.example"
MAILCHIMP_SUBSCRIBED = (
    "Email Address,First Name,Last Name,MEMBER_RATING,OPTIN_TIME,OPTIN_IP,CONFIRM_TIME,"
    "CONFIRM_IP,LATITUDE,LONGITUDE,GMTOFF,DSTOFF,TIMEZONE,CC,REGION,LAST_CHANGED,LEID,EUID,"
    "NOTES,TAGS\n"
    "ann@example.org,Ann,A,2,2025-03-01 10:00:00,198.51.100.1,2025-03-01 10:05:00,"
    "198.51.100.1,,,,,,,,2025-03-01 10:05:00,111,aaa,,\n"
    "bob@example.org,Bob,B,2,2025-04-01 09:00:00,198.51.100.2,,,,,,,,,,2025-04-01 09:00:00,"
    "112,bbb,,\n"
)
MAILCHIMP_UNSUBSCRIBED = (
    "Email Address,MEMBER_RATING,OPTIN_TIME,OPTIN_IP,CONFIRM_TIME,CONFIRM_IP,UNSUB_TIME,"
    "UNSUB_CAMPAIGN_TITLE,UNSUB_CAMPAIGN_ID,UNSUB_REASON,UNSUB_REASON_OTHER,LEID,EUID\n"
    "cid@example.org,1,2024-01-01 08:00:00,,2024-01-01 08:01:00,,2025-05-05 12:00:00,"
    "May,abc,NORMAL,,113,ccc\n"
)
MAILCHIMP_CLEANED = (
    "Email Address,CLEAN_TIME,CLEAN_CAMPAIGN_TITLE,LEID\n"
    "dan@example.org,2025-06-01 00:00:00,June,114\n"
)
LISTMONK = (
    "uuid,email,name,attributes,status,created_at,updated_at\n"
    'u-1,eve@example.org,Eve,"{""city"": ""Oslo""}",enabled,'
    "2024-02-01 10:00:00.123456 +0000 UTC,2024-02-01 10:00:00.123456 +0000 UTC\n"
    "u-2,fay@example.org,Fay,{},blocklisted,2023-01-01 00:00:00 +0000 UTC,"
    "2024-06-01 12:30:00 +0000 UTC\n"
    "u-3,gus@example.org,Gus,{},disabled,2023-01-01 00:00:00 +0000 UTC,"
    "2023-01-01 00:00:00 +0000 UTC\n"
)
TWILIO = (
    "contact_id,correlation_id,sender_id,status,source,date_of_consent\n"
    "+14155550301,c1,MG00000000000000000000000000000000,opt-in,website,2025-01-02T03:04:05Z\n"
    "+14155550302,c2,MG00000000000000000000000000000000,opt-out,opt-out-message,"
    "2025-02-02T03:04:05Z\n"
    "+14155550303,c3,MG00000000000000000000000000000000,opt-in,website,\n"
)


def _rows(text: str, layout: str, fmt: str = "csv") -> list[ImportRow | Skipped]:
    return list(parse(BytesCounter(io.BytesIO(text.encode())), layout, fmt))


def test_layouts_read_as_their_systems_write_them() -> None:
    """Mailchimp's three files, listmonk's export and Twilio's consent records."""
    ann, bob = _rows(MAILCHIMP_SUBSCRIBED, "mailchimp")
    assert isinstance(ann, ImportRow)
    assert isinstance(bob, ImportRow)
    assert ("opt_in", "2025-03-01T10:05:00+00:00") == (
        ann.action,
        ann.confirmed_time.isoformat() if ann.confirmed_time else None,
    )
    assert bob.confirmed_time is None
    (cid,) = _rows(MAILCHIMP_UNSUBSCRIBED, "mailchimp")
    assert isinstance(cid, ImportRow)
    assert ("opt_out", "NORMAL") == (cid.action, cid.evidence["unsubscribe_reason"])
    assert [Skipped(2, "mailchimp_cleaned")] == _rows(MAILCHIMP_CLEANED, "mailchimp")
    eve, fay, gus = _rows(LISTMONK, "listmonk")
    assert isinstance(eve, ImportRow)
    assert isinstance(fay, ImportRow)
    assert ("opt_in", "2024-02-01T10:00:00.123456+00:00") == (
        eve.action,
        eve.original_time.isoformat(),
    )
    assert ("opt_out", "2024-06-01T12:30:00+00:00") == (fay.action, fay.original_time.isoformat())
    assert Skipped(4, "listmonk_status_disabled") == gus
    one, two, three = _rows(TWILIO, "twilio")
    assert isinstance(one, ImportRow)
    assert isinstance(two, ImportRow)
    assert ("opt_in", "twilio website", "opt_out") == (one.action, one.original_method, two.action)
    assert Skipped(4, "twilio_no_date_of_consent") == three


def test_json_arrays_and_lines_are_read_a_piece_at_a_time() -> None:
    """The same rows as a JSON array (split anywhere) and as JSON Lines."""
    objects = [
        {"contact_id": f"+1415555{i:04d}", "status": "opt-out", "date_of_consent": "2025-01-01"}
        for i in range(3_000)
    ]
    as_array = json.dumps(objects)
    as_lines = "\n".join(json.dumps(o) for o in objects)
    for text in (as_array, as_lines, "\ufeff" + as_array):
        rows = _rows(text, "twilio", "json")
        assert 3_000 == len(rows)
        assert all(isinstance(r, ImportRow) and r.action == "opt_out" for r in rows)
    assert "+14155552999" == getattr(rows[-1], "contact", None)


def test_times_of_every_layout() -> None:
    """ISO 8601, Go's String(), Mailchimp's naive UTC."""
    assert "2024-01-01T00:00:00+00:00" == parse_time("2024-01-01 00:00:00").isoformat()
    assert "2024-01-01T01:00:00+00:00" == parse_time("2024-01-01T02:00:00+01:00").isoformat()
    go = parse_time("2024-03-01 09:30:00.5 +0200 CEST m=+0.000001")
    assert "2024-03-01T07:30:00.500000+00:00" == go.isoformat()


@pytest.fixture
async def runtime(settings: Settings, gateway: Gateway) -> AsyncIterator[Runtime]:
    """A second, short-lived instance on the same schema, as `gateway consent import` runs."""
    async with open_runtime(settings, PG_URL) as rt:
        yield rt


def _plan(path: Path, layout: str, sender: str, program: str | None, **kw: object) -> ImportPlan:
    channel = Channel.EMAIL if "@" in sender else Channel.SMS
    return ImportPlan(
        path=path,
        layout=layout,
        fmt="csv",
        channel=channel,
        sender=sender,
        program=program,
        source_system=str(kw.get("source", layout)),
        disclosure=str(kw.get("disclosure", "signup-form-v3")),
        dry_run=bool(kw.get("dry_run", False)),
    )


async def _import(runtime: Runtime, plan: ImportPlan) -> dict[str, int]:
    out = io.StringIO()
    summary = await run_import(runtime, plan, out=out, progress=False)
    return dict(summary.outcomes)


async def test_mailchimp_import_records_evidence_and_a_rerun_changes_nothing(
    runtime: Runtime, gateway: Gateway, db: asyncpg.Connection, tmp_path: Path
) -> None:
    """Confirmed sign-ups become opted in (pending, then confirmed: the real order), an
    unconfirmed one stays pending, the unsubscribed one is out; nobody gets a message, the
    gate sees it at once, and importing the same files again writes nothing at all."""
    files = {
        "sub.csv": MAILCHIMP_SUBSCRIBED,
        "unsub.csv": MAILCHIMP_UNSUBSCRIBED,
        "clean.csv": MAILCHIMP_CLEANED,
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    first: dict[str, int] = {}
    for name in files:
        for k, v in (
            await _import(runtime, _plan(tmp_path / name, "mailchimp", LIST, "newsletter"))
        ).items():
            first[k] = first.get(k, 0) + v
    assert {"applied": 3, "skipped:mailchimp_cleaned": 1} == first
    rows = await db.fetch(
        "SELECT c.address, s.state FROM consent s JOIN contacts c ON c.id = s.contact_id"
    )
    states = {r["address"]: r["state"] for r in rows}
    assert {
        "ann@example.org": "opted_in",
        "bob@example.org": "pending",
        "cid@example.org": "opted_out",
    } == states
    rows = await db.fetch("SELECT method, action, evidence FROM ledger ORDER BY seq")
    assert [
        ("import", "opt_in"),
        ("import", "opt_out"),
        ("import", "pending"),
        ("import", "pending"),
    ] == sorted((r["method"], r["action"]) for r in rows)
    evidence = json.loads(next(r["evidence"] for r in rows if r["action"] == "opt_in"))
    assert {
        "source_system": "mailchimp",
        "source_file": "sub.csv",
        "source_line": "2",
        "original_time": "2025-03-01T10:00:00+00:00",
        "original_method": "mailchimp subscribed",
        "disclosure": "signup-form-v3",
        "confirmed_time": "2025-03-01T10:05:00+00:00",
        "source_id": "111",
    }.items() <= evidence.items()
    assert 0 == await db.fetchval("SELECT count(*) FROM outbox")
    key = await new_key(gateway, "read")
    _, answer = await call(
        gateway,
        "POST",
        "/v1/gate/check",
        key=key,
        json={"sender": LIST, "program": "newsletter", "channel": "email", "to": "ann@example.org"},
    )
    assert answer["allowed"]

    before = (
        await db.fetchval("SELECT count(*) FROM ledger"),
        await db.fetchval("SELECT count(*) FROM inbound_events"),
    )
    again: dict[str, int] = {}
    for name in files:
        for k, v in (
            await _import(runtime, _plan(tmp_path / name, "mailchimp", LIST, "newsletter"))
        ).items():
            again[k] = again.get(k, 0) + v
    assert {"unchanged": 3, "skipped:mailchimp_cleaned": 1} == again
    assert before == (
        await db.fetchval("SELECT count(*) FROM ledger"),
        await db.fetchval("SELECT count(*) FROM inbound_events"),
    )


async def test_dry_run_prints_the_changes_and_writes_nothing(
    runtime: Runtime, db: asyncpg.Connection, tmp_path: Path
) -> None:
    path = tmp_path / "listmonk.csv"
    path.write_text(LISTMONK, encoding="utf-8")
    out = io.StringIO()
    plan = _plan(path, "listmonk", LIST, "newsletter", dry_run=True)
    summary = await run_import(runtime, plan, out=out, progress=False)
    assert {"would_apply": 2, "skipped:listmonk_status_disabled": 1} == dict(summary.outcomes)
    assert [("eve@example.org", "none", "pending"), ("fay@example.org", "none", "opted_out")] == [
        (c["contact"], c["from"], c["to"]) for c in map(json.loads, out.getvalue().splitlines())
    ]
    assert 0 == await db.fetchval("SELECT count(*) FROM ledger")
    assert 0 == await db.fetchval("SELECT count(*) FROM inbound_events")


async def test_a_file_never_resubscribes_nor_brings_back_the_erased(
    runtime: Runtime, gateway: Gateway, db: asyncpg.Connection, tmp_path: Path
) -> None:
    """An opt-in for someone who texted STOP here is kept out; an erased number is refused for
    every row; a row older than the state here is stale; an opt-in needs its disclosure."""
    await gateway.pipeline.handle(sms("STOP", contact="+14155550301"))
    await gateway.pipeline.handle(sms("START", contact="+14155550304"))
    key = await new_key(gateway, "admin")
    await gateway.pipeline.handle(sms("START", contact="+14155550302"))
    status, _ = await call(
        gateway,
        "POST",
        "/v1/privacy/erase",
        key=key,
        json={"channel": "sms", "contact": "+14155550302"},
    )
    assert 200 == status
    text = TWILIO + (
        "+14155550304,c4,MG0,opt-out,opt-out-message,2020-01-01T00:00:00Z\n"
        "+14155550305,c5,MG0,opt-in,website,2025-01-01T00:00:00Z\n"
    )
    path = tmp_path / "twilio.csv"
    path.write_text(text, encoding="utf-8")
    outcomes = await _import(runtime, _plan(path, "twilio", "12345", "reminders"))
    assert {
        "kept_opt_out": 1,
        "refused:suppressed": 1,
        "skipped:twilio_no_date_of_consent": 1,
        "stale": 1,
        "applied": 1,
    } == outcomes
    outcomes = await _import(runtime, _plan(path, "twilio", "12345", "reminders", disclosure=""))
    assert {
        "kept_opt_out": 1,
        "refused:suppressed": 1,
        "skipped:twilio_no_date_of_consent": 1,
        "stale": 1,
        "unchanged": 1,
    } == outcomes
    assert 0 == await db.fetchval("SELECT count(*) FROM contacts WHERE address = '+14155550302'")
