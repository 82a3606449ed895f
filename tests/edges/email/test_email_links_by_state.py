"""Unsubscribe and confirm links are decided by the consent state, over real HTTP.

A token is the same all hour. A dedupe key made from it (one-click: token and clock hour;
confirm: token alone) swallowed a click meant for a later state: after an unsubscribe, a
re-subscription and a second click within the hour nothing was recorded and the gate still
allowed, and a confirm link answered "confirmed" while a new sign-up stayed pending.
"""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import asyncpg
from mailtest import NEWS

from gateway.app import Gateway
from gateway.email.links import Target

pytest_plugins = ["email_fixtures"]

ADDRESS = "ann@example.org"
FORM = {
    "channel": "email",
    "sender": NEWS,
    "program": "newsletter",
    "contact": ADDRESS,
    "action": "opt_in",
    "method": "web_form",
    "evidence": {
        "checkbox_text": "Send me the newsletter",
        "disclosure_version": "2026-01",
        "ip": "203.0.113.9",
        "user_agent": "test",
        "page_url": "https://acme.example/news",
    },
}


async def _request(gw: Gateway, method: str, path: str, **kwargs: Any) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(
            method, f"http://127.0.0.1:{gw.http_port}{path}", allow_redirects=False, **kwargs
        ) as resp,
    ):
        return resp.status, await resp.text()


async def _sign_up(gw: Gateway, db: asyncpg.Connection, key: str, idempotency: str) -> str:
    """A web-form sign-up to the double opt-in newsletter; return the mailed confirm path."""
    status, _ = await _request(
        gw,
        "POST",
        "/v1/consent",
        json={**FORM, "idempotency_key": idempotency},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert 200 == status
    body = await db.fetchval("SELECT body FROM outbox WHERE kind = 'pending' ORDER BY id DESC")
    match = re.search(r"/c/(\S+)", body)
    assert match is not None
    return f"/c/{match.group(1)}"


async def _one_click(gw: Gateway, token: str) -> tuple[int, str]:
    return await _request(
        gw,
        "POST",
        f"/u/{token}",
        data=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )


async def _state(db: asyncpg.Connection) -> str:
    state: str = await db.fetchval("SELECT state FROM consent WHERE program = 'newsletter'")
    return state


async def _allowed(gw: Gateway) -> bool:
    answer = await gw.gate.check(NEWS, "newsletter", gw.catalogs[NEWS].channel, ADDRESS)
    return answer.allowed


async def test_the_same_one_click_link_unsubscribes_again_after_a_resubscription(
    mail_gateway: Gateway, mdb: asyncpg.Connection
) -> None:
    """Unsubscribe, re-subscribe (form and confirm link), click the same link again within the
    hour: the second click opts out again, is in the ledger, and the gate refuses; a third
    click changes nothing, queues nothing, and its page says it was already done."""
    gw = mail_gateway
    _, key = await gw.api.store.create_key("test", ["write"], actor="test")
    confirm = await _sign_up(gw, mdb, key, "s1")
    assert 200 == (await _request(gw, "POST", confirm))[0]
    assert await _allowed(gw)
    token = gw.email.links.token(Target(NEWS, ADDRESS))

    first = await _one_click(gw, token)
    assert (200, "opted_out", False) == (first[0], await _state(mdb), await _allowed(gw))
    assert "You are now unsubscribed" in first[1]

    confirm = await _sign_up(gw, mdb, key, "s2")
    assert 200 == (await _request(gw, "POST", confirm))[0]
    assert ("opted_in", True) == (await _state(mdb), await _allowed(gw))

    second = await _one_click(gw, token)
    assert (200, "opted_out", False) == (second[0], await _state(mdb), await _allowed(gw))
    assert "You are now unsubscribed" in second[1]
    outbox_before = await mdb.fetchval("SELECT count(*) FROM outbox")

    third = await _one_click(gw, token)

    assert 200 == third[0]
    assert "You were already unsubscribed" in third[1]
    actions = [r["action"] for r in await mdb.fetch("SELECT action FROM ledger ORDER BY seq")]
    assert ["pending", "opt_in", "opt_out", "pending", "opt_in", "opt_out"] == actions
    assert outbox_before == await mdb.fetchval("SELECT count(*) FROM outbox")


async def test_a_confirm_link_confirms_the_new_sign_up_after_an_opt_out(
    mail_gateway: Gateway, mdb: asyncpg.Connection
) -> None:
    """Sign up and confirm, opt out, sign up again within the hour (the same link is mailed):
    clicking it again confirms the new sign-up, and the page and the gate say so."""
    gw = mail_gateway
    _, key = await gw.api.store.create_key("test", ["write"], actor="test")
    first_link = await _sign_up(gw, mdb, key, "s1")
    assert 200 == (await _request(gw, "POST", first_link))[0]
    await _one_click(gw, gw.email.links.token(Target(NEWS, ADDRESS)))
    second_link = await _sign_up(gw, mdb, key, "s2")
    assert first_link == second_link  # tokens are issued the same all hour
    assert "pending" == await _state(mdb)

    status, page = await _request(gw, "POST", second_link)

    assert (200, "opted_in", True) == (status, await _state(mdb), await _allowed(gw))
    assert "your subscription is confirmed" in page


async def test_a_confirm_link_that_no_longer_applies_says_so_and_changes_nothing(
    mail_gateway: Gateway, mdb: asyncpg.Connection
) -> None:
    """Sign up, then opt out before confirming: the old link's POST neither subscribes nor
    starts a new sign-up (no ledger event, no mail) and its page says it no longer applies;
    clicking a link twice after confirming says it was already confirmed and mails nothing."""
    gw = mail_gateway
    _, key = await gw.api.store.create_key("test", ["write"], actor="test")
    link = await _sign_up(gw, mdb, key, "s1")
    await _one_click(gw, gw.email.links.token(Target(NEWS, ADDRESS)))
    ledger = await mdb.fetchval("SELECT count(*) FROM ledger")
    outbox = await mdb.fetchval("SELECT count(*) FROM outbox")

    status, page = await _request(gw, "POST", link)

    assert (200, "opted_out", False) == (status, await _state(mdb), await _allowed(gw))
    assert "This link no longer applies" in page
    assert (ledger, outbox) == (
        await mdb.fetchval("SELECT count(*) FROM ledger"),
        await mdb.fetchval("SELECT count(*) FROM outbox"),
    )

    link = await _sign_up(gw, mdb, key, "s2")
    assert "your subscription is confirmed" in (await _request(gw, "POST", link))[1]
    outbox = await mdb.fetchval("SELECT count(*) FROM outbox")
    status, page = await _request(gw, "POST", link)
    assert (200, "opted_in") == (status, await _state(mdb))
    assert "already confirmed" in page
    assert outbox == await mdb.fetchval("SELECT count(*) FROM outbox")
