"""The preference page in real headless Chromium: keyboard only, scripts disabled."""

from __future__ import annotations

import asyncpg
from api_helpers import call, new_key, opt_in_body
from browser import Browser

from gateway.app import Gateway


async def test_keyboard_toggles_without_javascript_are_recorded(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """One page for the person's number and email address. Tab to a toggle and press
    Space/Enter: the ledger gets a preference_page event per change, with scripts disabled
    in the browser; a GET alone changes nothing."""
    key = await new_key(gateway, "write")
    await call(gateway, "POST", "/v1/consent", key=key, json=opt_in_body("+14155550123", "k1"))
    status, link = await call(
        gateway,
        "POST",
        "/v1/preferences/links",
        key=key,
        json={
            "contacts": [
                {"channel": "sms", "contact": "+14155550123"},
                {"channel": "email", "contact": "ann@example.org"},
            ]
        },
    )
    assert 200 == status
    port = gateway.http_port
    url = link["url"].replace("http://127.0.0.1:8080", f"http://127.0.0.1:{port}")
    before = await db.fetchval("SELECT count(*) FROM ledger")

    async with Browser(javascript=False) as browser:
        await browser.goto(url)
        assert before == await db.fetchval("SELECT count(*) FROM ledger")
        labels = await browser.evaluate(
            "[...document.querySelectorAll('button[role=switch]')].map(b => b.textContent)"
        )
        assert [
            "Turn off Acme Health Reminders",
            "Turn on Acme Flu Shot Alerts",
            "Turn on Acme Health Newsletter",
        ] == labels
        # Keyboard only: the first Tab reaches the first toggle; Space presses it.
        await browser.press("Tab")
        focused = await browser.evaluate("document.activeElement.dataset.program")
        assert "12345/reminders" == focused
        await browser.press_and_wait_load("Space")
        state = await browser.evaluate(
            "document.querySelector('[data-program=\"12345/reminders\"]').textContent"
        )
        assert "Turn on Acme Health Reminders" == state
        # Tab twice to the flu toggle and press Enter: double opt-in, so it waits for YES.
        await browser.press("Tab")
        await browser.press("Tab")
        assert "12345/flu" == await browser.evaluate("document.activeElement.dataset.program")
        await browser.press_and_wait_load("Enter")
        text = await browser.evaluate("document.body.innerText")
        assert "Acme Flu Shot Alerts: Waiting for your confirmation" in text
        # The email section: three Tabs reach the newsletter toggle.
        for _ in range(3):
            await browser.press("Tab")
        focused = await browser.evaluate("document.activeElement.dataset.program")
        assert "news@lists.acme-health.example/newsletter" == focused
        await browser.press_and_wait_load("Space")

    rows = await db.fetch(
        "SELECT program, action, method FROM ledger WHERE method = 'preference_page' ORDER BY seq"
    )
    assert [
        ("reminders", "opt_out", "preference_page"),
        ("flu", "pending", "preference_page"),
        ("newsletter", "pending", "preference_page"),
    ] == [tuple(r) for r in rows]
    states = {
        r["program"]: r["state"] for r in await db.fetch("SELECT program, state FROM consent")
    }
    assert {"reminders": "opted_out", "flu": "pending", "newsletter": "pending"} == states


async def test_forged_or_wrong_purpose_link_is_refused(gateway: Gateway) -> None:
    """A token made for another purpose or altered gets 403 and changes nothing."""
    token = gateway.api.tokens.issue(b"sms\x00+14155550123", "confirm", ttl_seconds=3_600)
    status, _ = await call(gateway, "GET", f"/p/{token}")
    assert 403 == status
    status, _ = await call(gateway, "POST", f"/p/{token[:-2]}xx", data={"action": "on"})
    assert 403 == status
