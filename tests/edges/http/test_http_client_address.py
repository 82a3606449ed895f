"""The client address in evidence: X-Forwarded-For believed from trusted proxies only.

Real HTTP requests from 127.0.0.1 to a running gateway, once with 127.0.0.0/8 among
``[http] trusted_proxies`` (the peer is a proxy of ours) and once without (the peer is a
client that forged the header).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest
from support import PG_URL, SECRET

from gateway.app import Gateway
from gateway.email.links import Target
from gateway.security.signing import HEADER, WEBHOOK_PURPOSE, derive_key, sign
from gateway.settings import Settings

KEY = derive_key(SECRET.encode(), WEBHOOK_PURPOSE)
NEWS = "news@lists.acme-health.example"
# The client forged the first entry; 203.0.113.7 reached our inner proxy 10.1.2.3, which
# reached the proxy on 127.0.0.1 that connected to the gateway.
CHAIN = "198.51.100.1, 203.0.113.7, 10.1.2.3"


async def _running(settings: Settings, *trusted: str) -> AsyncIterator[Gateway]:
    http = dataclasses.replace(settings.http, trusted_proxies=trusted)
    async with Gateway(dataclasses.replace(settings, http=http)) as gw:
        yield gw


@pytest.fixture
async def behind_proxy(settings: Settings) -> AsyncIterator[Gateway]:
    """A gateway that trusts the loopback peer and 10.0.0.0/8 as its proxies."""
    async for gw in _running(settings, "127.0.0.0/8", "10.0.0.0/8"):
        yield gw


@pytest.fixture
async def exposed(settings: Settings) -> AsyncIterator[Gateway]:
    """A gateway whose only trusted proxies are elsewhere (10.0.0.0/8)."""
    async for gw in _running(settings, "10.0.0.0/8"):
        yield gw


async def _evidence(settings: Settings) -> list[dict[str, str]]:
    conn = await asyncpg.connect(PG_URL, server_settings={"search_path": settings.database.schema})
    try:
        rows = await conn.fetch("SELECT evidence FROM ledger ORDER BY seq")
    finally:
        await conn.close()
    return [json.loads(r["evidence"]) for r in rows]


async def _stop_by_webhook(gw: Gateway, forwarded: str | None, message_id: str) -> None:
    body = json.dumps(
        {"id": message_id, "from": "+14155550123", "to": "12345", "text": "STOP"}
    ).encode()
    headers = {"Content-Type": "application/json", HEADER: sign(KEY, body)}
    if forwarded is not None:
        headers["X-Forwarded-For"] = forwarded
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"http://127.0.0.1:{gw.http_port}/v1/inbound/sms", data=body, headers=headers
        ) as resp,
    ):
        assert 200 == resp.status, await resp.text()


async def _one_click(gw: Gateway, forwarded: str) -> None:
    token = gw.email.links.token(Target(NEWS, "ann.reader@example.org", None))
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"http://127.0.0.1:{gw.http_port}/u/{token}",
            data=b"List-Unsubscribe=One-Click",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Forwarded-For": forwarded,
            },
        ) as resp,
    ):
        assert 200 == resp.status, await resp.text()


async def test_a_trusted_proxy_names_the_client_the_evidence_records(
    settings: Settings, behind_proxy: Gateway
) -> None:
    """From a trusted peer the evidence holds the rightmost X-Forwarded-For entry that is
    not a trusted proxy, on the SMS webhook and the one-click POST alike."""
    await _stop_by_webhook(behind_proxy, CHAIN, "m1")
    await _one_click(behind_proxy, CHAIN)

    evidence = await _evidence(settings)
    assert ["203.0.113.7"] == sorted({e["remote"] for e in evidence if "remote" in e})
    assert ["203.0.113.7"] == sorted({e["ip"] for e in evidence if "ip" in e})


@pytest.mark.parametrize(
    ("forwarded", "recorded"),
    [
        (None, "127.0.0.1"),  # the proxy's own request (a health check) names itself
        ("", "127.0.0.1"),
        ("not-an-address", "127.0.0.1"),  # not written by a proxy: the proxy's peer is all
        ("٢٠٣.0.113.7", "127.0.0.1"),  # Arabic-Indic digits are no IPv4 address
        ("10.9.9.9, 10.1.2.3", "10.9.9.9"),  # every hop ours: the first one
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("2001:db8::7", "2001:db8::7"),
    ],
)
async def test_odd_forwarded_headers_from_a_trusted_proxy(
    settings: Settings, behind_proxy: Gateway, forwarded: str | None, recorded: str
) -> None:
    """Empty, malformed or odd X-Forwarded-For values from a trusted peer never put anything
    but an address a trusted hop saw into the evidence."""
    await _stop_by_webhook(behind_proxy, forwarded, "m1")

    assert [recorded] == [e["remote"] for e in await _evidence(settings) if "remote" in e][:1]


async def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(
    settings: Settings, exposed: Gateway
) -> None:
    """A peer outside ``trusted_proxies`` is the client, whatever X-Forwarded-For it sends."""
    await _stop_by_webhook(exposed, CHAIN, "m1")
    await _one_click(exposed, "203.0.113.7")

    evidence = await _evidence(settings)
    assert {"127.0.0.1"} == {e.get("remote", e.get("ip")) for e in evidence}
