"""The report's opt-out deadlines through the real parts: a STOP by the signed SMS webhook
whose confirmation leaves, one whose confirmation cannot leave (open, then missed), a
one-click unsubscribe beside an operator's email opt-out; and the business-day count across
the federal holidays of the rule data."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import asyncpg
import pytest
from audit_http import call, fetch, new_key
from support import PG_URL, ROOT, SECRET, eventually
from synthetic import LIST, Recorder

from gateway.app import Gateway
from gateway.app.audit_wiring import business_calendar
from gateway.audit.deadlines import BusinessCalendar, build_deadlines
from gateway.email.links import ONE_CLICK_VALUE, Target
from gateway.errors import ConfigError
from gateway.security.signing import HEADER, WEBHOOK_PURPOSE, derive_key, sign
from gateway.settings import RulesSettings, Settings
from rules.holidays import HolidayCalendar
from rules.loading import load_rules

NY = ZoneInfo("America/New_York")
WEBHOOK_KEY = derive_key(SECRET.encode(), WEBHOOK_PURPOSE)


async def _connect(settings: Settings) -> asyncpg.Connection:
    return await asyncpg.connect(PG_URL, server_settings={"search_path": settings.database.schema})


@pytest.fixture
async def sending_gateway(settings: Settings) -> AsyncIterator[Gateway]:
    """A gateway whose SMS and email confirmations leave at once (recorded, not delivered)."""
    async with Gateway(settings, senders={"sms": Recorder(), "email": Recorder()}) as gw:
        yield gw


async def _stop(gw: Gateway, message_id: str, number: str = "+14155550123") -> int:
    """A STOP through the signed webhook, as a provider posts it; its inbound id."""
    body = json.dumps({"id": message_id, "from": number, "to": "12345", "text": "STOP"}).encode()
    url = f"http://127.0.0.1:{gw.http_port}/v1/inbound/sms"
    headers = {HEADER: sign(WEBHOOK_KEY, body), "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as r:
        answer = await r.json()
    assert (200, "committed") == (r.status, answer["status"]), answer
    return int(answer["inbound_id"])


async def _report(gw: Gateway, key: str, fmt: str = "json") -> Any:
    today = datetime.now(UTC).date()
    period = f"from={today - timedelta(days=1)}&to={today + timedelta(days=2)}"
    status, _, body = await fetch(
        gw, "GET", f"/v1/admin/audit/report?{period}&format={fmt}", key=key
    )
    assert 200 == status, body[:300]
    return json.loads(body) if fmt == "json" else body.decode()


def _by_kind(item: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in item["deadlines"]}


async def test_a_signed_stop_whose_confirmation_leaves_meets_every_deadline(
    sending_gateway: Gateway, settings: Settings
) -> None:
    """Arrival, effect and the confirmation's departure are the stored times; five minutes
    and ten business days are both met, and the page prints the summary."""
    gw = sending_gateway
    inbound_id = await _stop(gw, "SM-deadline-1")
    db = await _connect(settings)
    try:
        sent_at = await eventually(
            lambda: db.fetchval(
                "SELECT sent_at FROM outbox WHERE inbound_id = $1 AND kind = 'opt_out'",
                inbound_id,
            ),
            message="the confirmation never left",
        )
        received = await db.fetchval(
            "SELECT received_at FROM inbound_events WHERE id = $1", inbound_id
        )
        committed = await db.fetchval(
            "SELECT min(server_time) FROM ledger WHERE inbound_id = $1", inbound_id
        )
    finally:
        await db.close()
    key = await new_key(gw, "admin")
    part = (await _report(gw, key))["opt_out_deadlines"]

    (item,) = part["items"]
    assert (inbound_id, "sms", "sms_keyword", ["flu", "reminders"]) == (
        item["inbound_id"], item["channel"], item["method"], sorted(item["programs"])
    )  # fmt: skip
    assert (received.isoformat(), committed.isoformat()) == (
        item["received_at"],
        item["took_effect_at"],
    )
    assert ("sent", sent_at.isoformat()) == (
        item["confirmation"]["status"],
        item["confirmation"]["sent_at"],
    )
    deadlines = _by_kind(item)
    assert ["sms_confirmation", "ten_business_days"] == sorted(deadlines)
    confirm = deadlines["sms_confirmation"]
    assert ("met", sent_at.isoformat()) == (confirm["status"], confirm["at"])
    assert (received + timedelta(minutes=5)).isoformat() == confirm["due"]
    assert round((sent_at - received).total_seconds(), 3) == confirm["seconds"] < 300
    honour = deadlines["ten_business_days"]
    assert ("met", committed.isoformat()) == (honour["status"], honour["at"])
    # At least two weeks: ten weekdays plus two weekends, more over a holiday.
    assert datetime.fromisoformat(honour["due"]) - received >= timedelta(days=14)
    summary = part["summary"]
    assert (1, 0, 0) == tuple(summary["sms_confirmation"][s] for s in ("met", "missed", "open"))
    assert (1, 1, 0) == tuple(
        summary["ten_business_days"][s] for s in ("applies_to", "met", "missed")
    )
    assert 0 == summary["one_click"]["applies_to"]
    assert (confirm["seconds"], inbound_id, True) == (
        summary["sms_confirmation"]["worst_seconds"],
        summary["sms_confirmation"]["worst_inbound_id"],
        summary["sms_confirmation"]["worst_finished"],
    )
    assert ("America/New_York", "us_federal") == (part["zone"], part["holiday_calendar"])

    html = await _report(gw, key, "html")
    assert "11. Opt-out deadlines" in html
    assert "<td>SMS confirmation</td><td>5 minutes</td><td>47 CFR 64.1200(a)(12)</td>" in html


async def test_a_confirmation_that_cannot_leave_is_open_then_missed(
    gateway: Gateway, settings: Settings
) -> None:
    """With no SMS sender the confirmation stays queued: its five minutes are open, due five
    minutes after receipt; once the clock is past them, missed. The stored times are moved
    six minutes back with SQL (the inbound event and its outbox row; the ledger is
    append-only and hashed, so the commit keeps its real time) to put the STOP in the past."""
    inbound_id = await _stop(gateway, "SM-deadline-2")
    key = await new_key(gateway, "admin")
    part = (await _report(gateway, key))["opt_out_deadlines"]
    (item,) = part["items"]
    assert ("queued", None) == (item["confirmation"]["status"], item["confirmation"]["sent_at"])
    confirm = _by_kind(item)["sms_confirmation"]
    received = datetime.fromisoformat(item["received_at"])
    assert ("open", None) == (confirm["status"], confirm["at"])
    assert (received + timedelta(minutes=5)).isoformat() == confirm["due"]
    assert 1 == part["summary"]["sms_confirmation"]["open"]

    db = await _connect(settings)
    try:
        await db.execute(
            "UPDATE inbound_events SET received_at = received_at - interval '6 minutes'"
            " WHERE id = $1",
            inbound_id,
        )
        await db.execute(
            "UPDATE outbox SET created_at = created_at - interval '6 minutes'"
            " WHERE inbound_id = $1",
            inbound_id,
        )
    finally:
        await db.close()
    report = await _report(gateway, key)
    part = report["opt_out_deadlines"]
    (item,) = part["items"]
    deadlines = _by_kind(item)
    confirm = deadlines["sms_confirmation"]
    assert ("missed", None) == (confirm["status"], confirm["at"])
    assert confirm["seconds"] >= 360
    assert (received - timedelta(minutes=6) + timedelta(minutes=5)).isoformat() == confirm["due"]
    assert "met" == deadlines["ten_business_days"]["status"]  # taken at once all the same
    summary = part["summary"]["sms_confirmation"]
    assert (0, 1, 0, False) == (
        summary["met"], summary["missed"], summary["open"], summary["worst_finished"]
    )  # fmt: skip
    html = await _report(gateway, key, "html")
    assert f"<td>{inbound_id}</td>" in html.split("Every deadline missed or still open")[1]
    assert "(not yet)" in html


async def test_a_one_click_unsubscribe_has_two_days_and_an_operator_entry_ten_business_days(
    sending_gateway: Gateway,
) -> None:
    """RFC 8058 one-click (method one_click): two days and ten business days; an email
    opt-out an operator enters (method api): ten business days only; neither has the SMS
    five minutes, and the one-click's confirmation mail left."""
    gw = sending_gateway
    token = gw.email.links.token(Target(LIST, "ann.reader@example.org", None))
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"http://127.0.0.1:{gw.http_port}/u/{token}",
            data=ONE_CLICK_VALUE.encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ) as response,
    ):
        assert 200 == response.status
    key = await new_key(gw, "admin")
    status, entered = await call(
        gw,
        "POST",
        "/v1/consent",
        key=key,
        json={"channel": "email", "sender": LIST, "program": "newsletter",
              "contact": "bob@example.org", "action": "opt_out", "method": "api",
              "idempotency_key": "desk-1"},
    )  # fmt: skip
    assert 200 == status, entered

    async def settled() -> dict[str, Any] | None:
        part: dict[str, Any] = (await _report(gw, key))["opt_out_deadlines"]
        click = part["items"][0]
        return part if click["confirmation"]["status"] == "sent" else None

    part = await eventually(settled, message="the one-click confirmation never left")
    click, desk = part["items"]
    assert ("one_click", "api") == (click["method"], desk["method"])
    assert entered["inbound_id"] == desk["inbound_id"]
    two_days = _by_kind(click)["one_click"]
    received = datetime.fromisoformat(click["received_at"])
    assert (received + timedelta(days=2)).isoformat() == two_days["due"]
    assert ("met", click["took_effect_at"]) == (two_days["status"], two_days["at"])
    assert ["one_click", "ten_business_days"] == sorted(_by_kind(click))
    assert ["ten_business_days"] == sorted(_by_kind(desk))
    summary = part["summary"]
    assert (1, 1) == (summary["one_click"]["applies_to"], summary["one_click"]["met"])
    assert (2, 2) == (
        summary["ten_business_days"]["applies_to"],
        summary["ten_business_days"]["met"],
    )
    assert 0 == summary["sms_confirmation"]["applies_to"]


def _federal() -> BusinessCalendar:
    holidays = load_rules(ROOT / "config" / "rules").holidays["us_federal"]
    return BusinessCalendar(HolidayCalendar([holidays]), "us_federal", "America/New_York")


def _row(received: datetime, took_effect: datetime, **extra: Any) -> dict[str, Any]:
    return {
        "inbound_id": 1, "contact_id": 1, "address": "+14155550123", "channel": "email",
        "sender": LIST, "method": "mailto", "received_at": received,
        "took_effect_at": took_effect, "programs": ["newsletter"], "outbox_id": None,
        "status": None, "queued_at": None, "sent_at": None, **extra,
    }  # fmt: skip


def test_ten_business_days_skip_christmas_and_new_year() -> None:
    """Wed 2026-12-23 15:30 New York: the 24th is day 1, Christmas (Fri 25th) and New Year's
    Day (Fri 2027-01-01) do not count, so the tenth is Fri 2027-01-08 at 15:30 (weekends
    only would give Wed 2027-01-06). Taking effect a minute late misses it; an unfinished
    confirmation before its due time is open."""
    received = datetime(2026, 12, 23, 15, 30, tzinfo=NY)
    due = datetime(2027, 1, 8, 15, 30, tzinfo=NY)
    cases = [(due, "met"), (due + timedelta(minutes=1), "missed")]
    for effect, expected in cases:
        part = build_deadlines([_row(received, effect)], _federal(), as_of=due + timedelta(days=1))
        (deadline,) = part["items"][0]["deadlines"]
        assert ("ten_business_days", expected) == (deadline["kind"], deadline["status"])
        assert due == datetime.fromisoformat(deadline["due"])
    sms = _row(received, received, channel="sms", method="sms_keyword", outbox_id=7,
               status="queued")  # fmt: skip
    part = build_deadlines([sms], _federal(), as_of=received + timedelta(minutes=4))
    confirm = _by_kind(part["items"][0])["sms_confirmation"]
    assert ("open", 240.0) == (confirm["status"], confirm["seconds"])
    failed = {**sms, "status": "failed"}
    part = build_deadlines([failed], _federal(), as_of=received + timedelta(minutes=4))
    assert "missed" == _by_kind(part["items"][0])["sms_confirmation"]["status"]
    imported = _row(received, received, method="import")
    part = build_deadlines([imported], _federal(), as_of=due)
    assert (0, 1, []) == (part["opt_outs"], part["imported_not_measured"], part["items"])


def test_rule_data_that_cannot_be_read_is_a_config_error(tmp_path: Path) -> None:
    """The report names the rule directory it could not read."""
    with pytest.raises(ConfigError, match="is not a directory"):
        business_calendar(RulesSettings(shipped_dir=str(tmp_path / "missing")))
    found = business_calendar(RulesSettings())  # the source tree's table
    assert (date(2026, 12, 25) in found.holidays, "America/New_York") == (True, found.zone)
