"""One catalog registry: an email list added or changed through the admin API on one instance
reaches the other instance's one-click links, pages and confirmation headers without a
restart (gateway/catalogs.py)."""

from __future__ import annotations

import tomllib
from typing import Any

import aiohttp
import asyncpg
from mailtest import NEWS, SUBSCRIBER, mail_settings, running
from support import CONFIG, eventually

from gateway.app import Gateway
from gateway.email.links import Target
from gateway.settings import Settings

pytest_plugins = ["email_fixtures"]

DEALS = "deals@lists.acme-health.example"
ONE_CLICK = {"Content-Type": "application/x-www-form-urlencoded"}


def _news(**changes: Any) -> dict[str, Any]:
    definition = tomllib.loads((CONFIG.parent / "senders" / "news.toml").read_text())
    definition.update(changes)
    return definition


async def _admin_put(gw: Gateway, sender: str, definition: dict[str, Any]) -> int:
    """PUT a sender definition through A's admin API with a fresh admin key."""
    _, key = await gw.api.store.create_key("test", ["admin"], actor="test")
    url = f"http://127.0.0.1:{gw.http_port}/v1/admin/senders/{sender}"
    async with (
        aiohttp.ClientSession() as http,
        http.put(url, json=definition, headers={"Authorization": f"Bearer {key}"}) as r,
    ):
        return r.status


async def test_a_list_added_on_one_instance_serves_one_click_on_the_other(
    mail_gateway: Gateway, settings: Settings, mdb: asyncpg.Connection
) -> None:
    """A new list PUT on A: B issues its headers and takes its one-click POST at once."""
    async with running(mail_settings(settings)) as other:
        assert DEALS not in other.email.links.lists
        assert 200 == await _admin_put(mail_gateway, DEALS, _news(sender=DEALS))
        await eventually(
            lambda: DEALS in other.email.links.lists, message="B never saw the new list"
        )
        headers = other.email.links.headers(Target(DEALS, SUBSCRIBER))
        assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        token = mail_gateway.email.links.token(Target(DEALS, SUBSCRIBER))
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{other.http_port}/u/{token}"
            async with http.post(url, data=b"List-Unsubscribe=One-Click", headers=ONE_CLICK) as r:
                assert 200 == r.status
    assert "opted_out" == await mdb.fetchval("SELECT state FROM consent WHERE sender = $1", DEALS)


async def test_a_brand_changed_on_one_instance_shows_on_the_others_page(
    mail_gateway: Gateway, settings: Settings
) -> None:
    """The one-click page on B names the brand A's admin change gave the list."""
    async with running(mail_settings(settings)) as other:
        token = other.email.links.token(Target(NEWS, SUBSCRIBER))
        assert 200 == await _admin_put(mail_gateway, NEWS, _news(brand="Acme Health Clinics"))
        await eventually(
            lambda: other.catalogs[NEWS].brand == "Acme Health Clinics",
            message="B kept the old brand",
        )
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{other.http_port}/u/{token}"
            async with http.get(url) as r:
                assert 200 == r.status
                assert "Acme Health Clinics" in await r.text()
