"""The GET confirm page in headless Chromium with JavaScript on: loading never unsubscribes."""

from __future__ import annotations

import asyncpg
from browser import Browser
from mailtest import NEWS, SUBSCRIBER
from support import count_rows

from gateway.app import Gateway
from gateway.email.links import Target

pytest_plugins = ["email_fixtures"]


async def test_loading_the_page_does_not_unsubscribe_and_pressing_its_button_does(
    mail_gateway: Gateway, mdb: asyncpg.Connection
) -> None:
    """A scanner-like load (script on, page fully loaded) writes nothing; the button does."""
    token = mail_gateway.email.links.token(Target(NEWS, SUBSCRIBER))
    url = f"http://127.0.0.1:{mail_gateway.http_port}/u/{token}"
    async with Browser(javascript=True) as browser:
        await browser.goto(url)
        await browser.goto(url)  # a second scanner pass
        assert "Unsubscribe" == await browser.evaluate(
            "document.getElementById('confirm').innerText"
        )
        assert 0 == await count_rows(mdb, "inbound_events")

        await browser.evaluate("document.getElementById('confirm').focus()")
        await browser.press_and_wait_load("Enter")

        text = await browser.evaluate("document.body.innerText")
        assert "You will no longer receive these Acme Health emails." in text
        assert url == await browser.evaluate("location.href")  # answered in place, no redirect
    rows = await mdb.fetch("SELECT method, evidence->>'source' AS source FROM ledger")
    assert [("one_click", "confirm_page")] == [tuple(r) for r in rows]
