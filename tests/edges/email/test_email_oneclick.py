"""RFC 8058 one-click over real HTTP: Gmail-style POSTs, RFC examples, the GET page, refusals."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import asyncpg
import pytest
from mailtest import NEWS, SUBSCRIBER
from support import SECRET, count_rows

from gateway.app import Gateway
from gateway.email.links import PURPOSE, Target
from gateway.security.signing import HEADER, WEBHOOK_PURPOSE, derive_key, sign
from gateway.security.tokens import TokenCodec

pytest_plugins = ["email_fixtures"]

GMAIL_UA = "Mozilla/5.0 (compatible; Gmail one-click unsubscribe)"
# RFC 8058 section 8.1 and 8.2 bodies, byte for byte. The 8.2 multipart body is malformed:
# its delimiters lack the two leading hyphens RFC 2046 section 5.1.1 requires.
RFC_SIMPLE = ("application/x-www-form-urlencoded", b"List-Unsubscribe=One-Click")
RFC_COMPLEX = (
    "multipart/form-data; boundary=---FormBoundaryjWmhtjORrn",
    b"---FormBoundaryjWmhtjORrn\r\n"
    b'Content-Disposition: form-data; name="List-Unsubscribe"\r\n\r\n'
    b"One-Click\r\n"
    b"---FormBoundaryjWmhtjORrn--\r\n",
)


def url(gw: Gateway, token: str) -> str:
    return f"http://127.0.0.1:{gw.http_port}/u/{token}"


def token_for(gw: Gateway, address: str = SUBSCRIBER, program: str | None = None) -> str:
    return gw.email.links.token(Target(NEWS, address, program))


async def post(gw: Gateway, token: str, content_type: str, body: bytes) -> aiohttp.ClientResponse:
    async with aiohttp.ClientSession() as http:
        response = await http.post(
            url(gw, token),
            data=body,
            headers={"Content-Type": content_type, "User-Agent": GMAIL_UA},
            allow_redirects=False,
        )
        await response.read()
        return response


async def test_urlencoded_one_click_unsubscribes_with_ip_and_user_agent_in_the_ledger(
    mail_gateway: Gateway, mdb: asyncpg.Connection
) -> None:
    """Gmail's urlencoded POST answers 200 (no redirect) after committing method one_click."""
    response = await post(mail_gateway, token_for(mail_gateway), *RFC_SIMPLE)

    assert 200 == response.status
    rows = await mdb.fetch("SELECT * FROM ledger")
    assert [("newsletter", "opt_out", "one_click", "opted_out")] == [
        (r["program"], r["action"], r["method"], r["new_state"]) for r in rows
    ]
    evidence = json.loads(rows[0]["evidence"])
    assert ("127.0.0.1", GMAIL_UA, "present") == (
        evidence["ip"],
        evidence["user_agent"],
        evidence["one_click_field"],
    )
    assert "ann.reader@example.org" == await mdb.fetchval("SELECT address FROM contacts")
    assert ["opt_out"] == [r["kind"] for r in await mdb.fetch("SELECT kind FROM outbox")]


async def test_multipart_one_click_as_a_browser_encodes_it_unsubscribes(
    mail_gateway: Gateway, mdb: asyncpg.Connection
) -> None:
    """A well-formed multipart/form-data body (aiohttp's FormData) unsubscribes too."""
    form = aiohttp.FormData()
    form.add_field("List-Unsubscribe", "One-Click")
    async with aiohttp.ClientSession() as http:
        response = await http.post(url(mail_gateway, token_for(mail_gateway)), data=form,
                                   allow_redirects=False)  # fmt: skip
        assert 200 == response.status
    assert "opted_out" == await mdb.fetchval("SELECT state FROM consent")


@pytest.mark.parametrize("example", [RFC_SIMPLE, RFC_COMPLEX], ids=["rfc8058-8.1", "rfc8058-8.2"])
async def test_the_rfc_examples_unsubscribe_even_the_malformed_multipart_one(
    mail_gateway: Gateway, mdb: asyncpg.Connection, example: tuple[str, bytes]
) -> None:
    """Both RFC 8058 section 8 request bodies unsubscribe: the token decides, not the body."""
    response = await post(mail_gateway, token_for(mail_gateway), *example)

    assert 200 == response.status
    assert "opted_out" == await mdb.fetchval("SELECT state FROM consent")


async def test_repeated_and_concurrent_posts_give_one_ledger_event_and_one_confirmation(
    mail_gateway: Gateway, mdb: asyncpg.Connection
) -> None:
    """Ten POSTs of one link, five at once: one ledger event, one confirmation, all 200."""
    token = token_for(mail_gateway)
    statuses = [r.status for r in await asyncio.gather(
        *(post(mail_gateway, token, *RFC_SIMPLE) for _ in range(5)))]  # fmt: skip
    for _ in range(5):
        statuses.append((await post(mail_gateway, token, *RFC_SIMPLE)).status)

    assert [200] * 10 == statuses
    assert 1 == await count_rows(mdb, "ledger")
    assert 1 == await count_rows(mdb, "outbox")


async def test_a_program_token_unsubscribes_only_that_program(
    mail_gateway: Gateway, mdb: asyncpg.Connection
) -> None:
    """A token naming a program records an opt-out of that program."""
    await post(mail_gateway, token_for(mail_gateway, program="newsletter"), *RFC_SIMPLE)
    assert ["newsletter"] == [r["program"] for r in await mdb.fetch("SELECT program FROM ledger")]


async def test_get_shows_a_confirm_page_and_changes_nothing(
    mail_gateway: Gateway, mdb: asyncpg.Connection
) -> None:
    """A GET (what a link scanner does) renders a script-free page with a POST button only."""
    async with aiohttp.ClientSession() as http:
        response = await http.get(url(mail_gateway, token_for(mail_gateway)))
        body = await response.text()
    assert 200 == response.status
    assert '<form method="post">' in body
    assert "<script" not in body
    assert "script-src" not in response.headers["Content-Security-Policy"]
    assert "A***@example.org" in body
    assert 0 == await count_rows(mdb, "inbound_events")
    assert 0 == await count_rows(mdb, "ledger")


async def test_forged_malformed_expired_and_revoked_tokens_get_4xx_and_write_nothing(
    mail_gateway: Gateway, mdb: asyncpg.Connection
) -> None:
    """Each refused token answers its own 4xx and leaves the database untouched."""
    links = mail_gateway.email.links
    good = token_for(mail_gateway)
    payload = links.codec.verify(good, PURPOSE)
    expired = links.codec.issue(payload, PURPOSE, ttl_seconds=30 * 86_400,
                                now=time.time() - 40 * 86_400)  # fmt: skip
    forged = good[:-6] + ("AAAAAA" if not good.endswith("AAAAAA") else "BBBBBB")
    revoked = token_for(mail_gateway, "bob@example.org")
    await mail_gateway.email.marks.revoke(TokenCodec.fingerprint(revoked), "leaked in a forward")

    statuses = {}
    for name, token in [("forged", forged), ("malformed", "k0.!!"), ("expired", expired),
                        ("revoked", revoked), ("garbage", "nonsense")]:  # fmt: skip
        statuses[name] = (await post(mail_gateway, token, *RFC_SIMPLE)).status

    assert {"forged": 403, "malformed": 400, "expired": 410, "revoked": 403,
            "garbage": 400} == statuses  # fmt: skip
    assert 0 == await count_rows(mdb, "inbound_events")
    assert 0 == await count_rows(mdb, "contacts")


async def test_header_service_returns_rfc8058_headers_whose_link_works(
    mail_gateway: Gateway, mdb: asyncpg.Connection
) -> None:
    """The signed header service gives List-Unsubscribe (HTTPS + mailto) and -Post values."""
    body = json.dumps({"list": NEWS, "to": "carol@example.net"}).encode()
    key = derive_key(SECRET.encode(), WEBHOOK_PURPOSE)
    async with aiohttp.ClientSession() as http:
        response = await http.post(
            f"http://127.0.0.1:{mail_gateway.http_port}/v1/email/headers",
            data=body,
            headers={HEADER: sign(key, body), "Content-Type": "application/json"},
        )
        data = await response.json()
        unsigned = await http.post(
            f"http://127.0.0.1:{mail_gateway.http_port}/v1/email/headers", data=body
        )
    assert (200, 401) == (response.status, unsigned.status)
    headers = data["headers"]
    assert "List-Unsubscribe=One-Click" == headers["List-Unsubscribe-Post"]
    assert headers["List-Unsubscribe"].startswith("<https://unsubscribe.acme-health.example/u/")
    assert "mailto:unsubscribe+" in headers["List-Unsubscribe"]
    token = data["url"].rsplit("/", 1)[1]
    assert 200 == (await post(mail_gateway, token, *RFC_SIMPLE)).status
    assert "carol@example.net" == await mdb.fetchval("SELECT address FROM contacts")
