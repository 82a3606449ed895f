"""The compliance report over a month of synthetic traffic on the real PostgreSQL: it flags
exactly the one late confirmation and the one outside send after an opt-out, gives the same
document for the same data, and its HTML draws its charts in headless Chromium."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from audit_http import fetch
from browser import Browser
from png import decode
from support import PG_URL
from synthetic import Frozen, Month, Recorder, run_month, settle_outbox

import gateway.messages
import gateway.store.writer
from gateway.app import Gateway
from gateway.settings import Settings

REPORT = "/v1/admin/audit/report?from=2026-11-01&to=2026-12-01"


@pytest.fixture
async def month_gateway(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Gateway, asyncpg.Connection, Month]]:
    """A gateway that lived through November 2026, its outbox settled on that clock."""
    monkeypatch.setattr(gateway.store.writer, "datetime", Frozen)
    monkeypatch.setattr(gateway.messages, "datetime", Frozen)
    # Sign-ups expire when the test says so, not when the background sweep runs.
    settings = dataclasses.replace(
        settings, edges={**settings.edges, "api": {"confirm_ttl_hours": 87_600}}
    )
    senders = {"sms": Recorder(), "email": Recorder()}
    async with Gateway(settings, senders=senders) as gw:
        db = await asyncpg.connect(
            PG_URL, server_settings={"search_path": settings.database.schema}
        )
        try:
            month = await run_month(gw)
            await settle_outbox(db, month)
            yield gw, db, month
        finally:
            await db.close()


async def _report(gw: Gateway, key: str, fmt: str) -> bytes:
    status, _, body = await fetch(gw, "GET", f"{REPORT}&format={fmt}", key=key)
    assert 200 == status, body[:300]
    return body


async def test_the_month_report_flags_exactly_the_two_breaches(
    month_gateway: tuple[Gateway, asyncpg.Connection, Month], tmp_path: Path
) -> None:
    """JSON and HTML name the late confirmation and the send after opt-out, and nothing else;
    every other section holds what the month did."""
    gw, db, month = month_gateway
    report = json.loads(await _report(gw, month.admin_key, "json"))

    kinds = [(f["kind"], f.get("inbound_id") or f.get("message_id")) for f in report["findings"]]
    assert [
        ("late_confirmation", month.late_inbound),
        ("send_after_opt_out", month.violating_message_id),
    ] == kinds
    late = report["sms_opt_out_confirmations"]
    assert [month.late_inbound] == [i["inbound_id"] for i in late["late"]]
    assert 420 <= late["late"][0]["seconds"] < 430
    assert 1 == {b["bucket"]: b["count"] for b in late["distribution"]}["> 5 min"]
    outside = report["sends_to_people_not_allowed"]
    assert [] == outside["outbox"]
    (violation,) = outside["reported"]
    assert ("opted_out", "opted_in", True) == (
        violation["state"],
        violation["gate"]["answer"],
        violation["gate"]["same_scope"],
    )
    assert 5 == outside["reported_sends"]
    assert outside["outbox_sends"] >= 10

    deadlines = report["opt_out_deadlines"]["summary"]
    confirmations = deadlines["sms_confirmation"]
    assert (1, 0, month.late_inbound) == (
        confirmations["missed"],
        confirmations["open"],
        confirmations["worst_inbound_id"],
    )
    assert 420 <= confirmations["worst_seconds"] < 430
    assert (3, 3) == (deadlines["one_click"]["applies_to"], deadlines["one_click"]["met"])
    honoured = deadlines["ten_business_days"]
    assert (0, 0) == (honoured["missed"], honoured["open"])
    assert honoured["applies_to"] == honoured["met"] >= confirmations["applies_to"] + 3

    reviews = report["review_queue"]
    assert (len(month.flagged), 1, 1) == (
        reviews["flagged"],
        reviews["confirmed"],
        reviews["reversed"],
    )
    doi = report["double_opt_in"]
    assert (3, 3) == (doi["confirmed"], len(doi["expired"]))
    assert ["newsletter"] == [p["program"] for p in doi["pending_at_end"]]
    email = report["email_unsubscribes"]
    assert (3, 3, []) == (email["requests"], email["within_48_hours"], email["late"])
    assert 0 == report["missing_evidence"]["total"]
    assert {"2026-01"} == {v["version"] for v in report["disclosure_versions"] if v["version"]}
    chain = report["chain"]
    assert chain["ok"]
    assert chain["head_seq"] == chain["events"]
    assert chain["head_hash"] == bytes(await db.fetchval("SELECT hash FROM ledger_head")).hex()
    assert 30 == len(report["consent_changes"]["days"])
    assert {"sms_keyword", "web_form", "one_click", "api"} <= set(
        report["consent_changes"]["by_method"]
    )

    html = (await _report(gw, month.admin_key, "html")).decode()
    assert "inbound_id" not in html  # keys stay in the JSON; the page speaks in words
    assert f"<td>{month.late_inbound}</td>" in html
    assert f"<td>{month.violating_message_id}</td>" in html
    assert html.count("<svg") == 5


async def test_the_same_data_gives_the_same_document(
    month_gateway: tuple[Gateway, asyncpg.Connection, Month],
) -> None:
    """Two reports of unchanged data differ in their generation time only."""
    gw, _, month = month_gateway
    first = json.loads(await _report(gw, month.admin_key, "json"))
    second = json.loads(await _report(gw, month.admin_key, "json"))
    assert first["generated_at"] != second["generated_at"]
    for fmt in ("json", "html"):
        a, b = await _report(gw, month.admin_key, fmt), await _report(gw, month.admin_key, fmt)
        stamp_a = json.loads(a)["generated_at"] if fmt == "json" else _stamp(a)
        stamp_b = json.loads(b)["generated_at"] if fmt == "json" else _stamp(b)
        assert a.replace(stamp_a.encode(), b"T") == b.replace(stamp_b.encode(), b"T")


def _stamp(html: bytes) -> str:
    marker = b"<td>Generated</td><td>"
    start = html.index(marker) + len(marker)
    return html[start : html.index(b"<", start)].decode()


async def test_the_html_draws_its_charts_in_chromium(
    month_gateway: tuple[Gateway, asyncpg.Connection, Month], tmp_path: Path
) -> None:
    """The page loads from a file with nothing else, shows five SVG charts with bars, and a
    screenshot of the first chart is not blank."""
    gw, _, month = month_gateway
    page = tmp_path / "report.html"
    page.write_bytes(await _report(gw, month.admin_key, "html"))
    async with Browser(javascript=False) as browser:
        await browser.goto(page.as_uri())
        assert 5 == await browser.evaluate("document.querySelectorAll('svg').length")
        assert await browser.evaluate("document.querySelectorAll('svg rect').length") > 60
        box: dict[str, Any] = await browser.evaluate(
            "(() => { const r = document.querySelector('figure.chart svg')"
            ".getBoundingClientRect(); return {x: r.x, y: r.y, width: r.width,"
            " height: r.height}; })()"
        )
        # The chart is below the fold: the capture reaches past the viewport.
        shot = await browser.send(
            "Page.captureScreenshot",
            format="png",
            clip={**box, "scale": 1},
            captureBeyondViewport=True,
        )
    (tmp_path / "chart.png").write_bytes(base64.b64decode(shot["data"]))
    width, height, rows = decode(base64.b64decode(shot["data"]))
    assert (width, height) == (round(box["width"]), round(box["height"]))
    pixels = [row[i : i + 3] for row in rows for i in range(0, len(row), 3)]
    coloured = sum(1 for p in pixels if max(p) - min(p) > 40)  # not white, grey or black
    assert coloured > 0.02 * len(pixels)
    assert len(set(pixels)) > 10
