"""Confirmation mail through a real relay (a local aiosmtpd sink): DKIM, headers, retries."""

from __future__ import annotations

import email
import re
from collections.abc import Callable
from email import policy

import aiohttp
import asyncpg
import dkim  # type: ignore[import-untyped]  # dkimpy ships no type hints
from mailtest import DOMAIN, NEWS, SUBSCRIBER, DkimKey, RelaySink, mail_settings, running
from support import PG_URL, eventually

from gateway.app import Gateway
from gateway.email.links import Target
from gateway.settings import Settings

pytest_plugins = ["email_fixtures"]


async def one_click(gw: Gateway, address: str = SUBSCRIBER) -> None:
    token = gw.email.links.token(Target(NEWS, address))
    async with aiohttp.ClientSession() as http:
        response = await http.post(
            f"http://127.0.0.1:{gw.http_port}/u/{token}", data=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )  # fmt: skip
        assert 200 == response.status


async def outbox_row(settings: Settings) -> asyncpg.Record:
    conn = await asyncpg.connect(PG_URL, server_settings={"search_path": settings.database.schema})
    try:
        row = await conn.fetchrow("SELECT status, attempts, last_error, provider_ref FROM outbox")
        assert row is not None
        return row
    finally:
        await conn.close()


async def row_when(
    settings: Settings, done: Callable[[asyncpg.Record], bool], within: float, message: str
) -> asyncpg.Record:
    """The outbox row once ``done(row)`` holds (the outbox records a send after the relay)."""

    async def check() -> asyncpg.Record | None:
        row = await outbox_row(settings)
        return row if done(row) else None

    return await eventually(check, timeout=within, interval=0.05, message=message)


async def test_confirmation_is_dkim_signed_over_the_list_headers_and_fails_when_altered(
    settings: Settings, relay: RelaySink, dkim_key: DkimKey
) -> None:
    """The relay gets one signed confirmation that verifies; altering a signed header breaks it."""
    async with running(mail_settings(settings, relay_port=relay.port, dkim=dkim_key)) as gw:
        await one_click(gw)
        [envelope] = await relay.wait_for(1)
        data = envelope.original_content
        assert data is not None
        msg = email.message_from_bytes(data, policy=policy.default)

        local, _, domain = str(envelope.mail_from).partition("@")
        assert ("bounces", "lists.acme-health.example") == (local.partition("+")[0], domain)
        assert "+" in local  # VERP: the row's own bounce address
        assert len(local) <= 64  # RFC 5321 section 4.5.3.1.1
        assert ["Ann.Reader@example.org"] == envelope.rcpt_tos
        assert "Acme Health <news@lists.acme-health.example>" == str(msg["From"])
        assert "auto-generated" == str(msg["Auto-Submitted"])
        assert "List-Unsubscribe=One-Click" == str(msg["List-Unsubscribe-Post"])
        assert str(msg["List-Unsubscribe"]).startswith(
            "<https://unsubscribe.acme-health.example/u/"
        )
        body = msg.get_body(("plain",))
        assert body is not None
        text = body.get_content()
        assert "1 Main St, Springfield, IL 62701" in text
        assert "help@acme-health.example" in text
        assert "No more emails will be sent" in text

        signature = re.sub(r"\s+", "", str(msg["DKIM-Signature"]))
        signed = set(re.search(r"h=([^;]+)", signature).group(1).lower().split(":"))  # type: ignore[union-attr]
        assert {"from", "list-unsubscribe", "list-unsubscribe-post", "auto-submitted"} <= signed
        assert dkim.verify(data, dnsfunc=dkim_key.dnsfunc)
        altered = data.replace(b"List-Unsubscribe=One-Click", b"List-Unsubscribe=Two-Clicks")
        assert not dkim.verify(altered, dnsfunc=dkim_key.dnsfunc)
        resubjected = re.sub(rb"Subject: [^\r\n]+", b"Subject: You won a prize", data)
        assert not dkim.verify(resubjected, dnsfunc=dkim_key.dnsfunc)
        # The relay answered; the outbox records it next.
        row = await row_when(settings, lambda r: r["status"] == "sent", 10, "never recorded")
        assert str(msg["Message-ID"]) == row["provider_ref"]


def header_lines(data: bytes) -> dict[bytes, list[bytes]]:
    """The header block as it reached the relay: each field's raw lines, folding kept."""
    fields: dict[bytes, list[bytes]] = {}
    name = b""
    for line in data.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        if line[:1] not in (b" ", b"\t"):
            name = line.partition(b":")[0].lower()
            fields[name] = []
        fields[name].append(line)
    return fields


async def test_list_unsubscribe_reaches_the_relay_as_ascii_uris_folded_after_the_comma(
    settings: Settings, relay: RelaySink, dkim_key: DkimKey
) -> None:
    """The raw bytes the relay receives carry List-Unsubscribe as RFC 2369 writes it: two
    angle-bracketed ASCII URIs, HTTPS first, the line folded only after the comma, no
    encoded word in it or in any other list header; every header line is ASCII and within
    998 octets, and DKIM verifies those very bytes."""
    async with running(mail_settings(settings, relay_port=relay.port, dkim=dkim_key)) as gw:
        await one_click(gw)
        [envelope] = await relay.wait_for(1)
    data = envelope.original_content
    assert data is not None
    token = gw.email.links.token(Target(NEWS, SUBSCRIBER))
    fields = header_lines(data)

    https = b"<https://unsubscribe.acme-health.example/u/" + token.encode() + b">"
    mailto = b"<mailto:unsubscribe+" + token.encode() + b"@" + DOMAIN.encode()
    assert [
        b"List-Unsubscribe: " + https + b",",
        b" " + mailto + b"?subject=unsubscribe>",
    ] == fields[b"list-unsubscribe"]
    post = fields[b"list-unsubscribe-post"]
    assert [b"List-Unsubscribe-Post: List-Unsubscribe=One-Click"] == post
    assert [b"List-Id: Acme Health <news.lists.acme-health.example>"] == fields[b"list-id"]
    message_id = b"".join(fields[b"message-id"])
    assert re.fullmatch(rb"Message-ID: <c\d+\.[A-Za-z0-9_.\-]+@acme-health\.example>", message_id)
    head = data.partition(b"\r\n\r\n")[0]
    assert b"=?" not in head  # nothing of ours needs an encoded word: brand and subject are ASCII
    assert head.isascii()
    assert all(len(line) <= 998 for line in head.split(b"\r\n"))  # RFC 5322 section 2.1.1
    assert dkim.verify(data, dnsfunc=dkim_key.dnsfunc)


async def test_confirmation_waits_and_retries_while_the_relay_is_down(
    settings: Settings, dkim_key: DkimKey
) -> None:
    """With the relay down the row stays queued and retries; once it is up the mail goes out."""
    relay = RelaySink()
    await relay.start()
    port = relay.port
    await relay.stop()
    async with running(mail_settings(settings, relay_port=port, dkim=dkim_key)) as gw:
        await one_click(gw)
        row = await row_when(settings, lambda r: r["attempts"] >= 2, 20, "not tried twice")
        assert row["status"] in {"queued", "sending"}  # between attempts, or in one
        assert "relay unreachable" in row["last_error"]

        await relay.start(port)
        try:
            [envelope] = await relay.wait_for(1)
            assert ["Ann.Reader@example.org"] == envelope.rcpt_tos
            await row_when(settings, lambda r: r["status"] == "sent", 10, "never sent")
        finally:
            await relay.stop()


async def test_a_permanent_refusal_by_the_relay_fails_the_row_without_retrying(
    settings: Settings, relay: RelaySink
) -> None:
    """A 550 from the relay for the message marks the row failed after one attempt."""
    relay.refuse_with = "550 5.7.1 message refused"
    async with running(mail_settings(settings, relay_port=relay.port)) as gw:
        await one_click(gw)
        row = await row_when(settings, lambda r: r["status"] == "failed", 20, "never failed")
    assert 1 == row["attempts"]
