"""Confirmation mail through a real relay (a local aiosmtpd sink): DKIM, headers, retries."""

from __future__ import annotations

import asyncio
import email
import re
from email import policy

import aiohttp
import asyncpg
import dkim  # type: ignore[import-untyped]  # dkimpy ships no type hints
from mailtest import NEWS, SUBSCRIBER, DkimKey, RelaySink, mail_settings, running
from support import PG_URL

from gateway.app import Gateway
from gateway.edges.unsubscribe import Target
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

        assert "bounces@lists.acme-health.example" == envelope.mail_from
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
        async with asyncio.timeout(10):  # the relay answered; the outbox records it next
            while (row := await outbox_row(settings))["status"] != "sent":  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert str(msg["Message-ID"]) == row["provider_ref"]


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
        async with asyncio.timeout(20):
            while (row := await outbox_row(settings))["attempts"] < 2:  # noqa: ASYNC110 - polls Postgres
                await asyncio.sleep(0.05)
        assert row["status"] in {"queued", "sending"}  # between attempts, or in one
        assert "relay unreachable" in row["last_error"]

        await relay.start(port)
        try:
            [envelope] = await relay.wait_for(1)
            assert ["Ann.Reader@example.org"] == envelope.rcpt_tos
            async with asyncio.timeout(10):
                while (await outbox_row(settings))["status"] != "sent":  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
        finally:
            await relay.stop()


async def test_a_permanent_refusal_by_the_relay_fails_the_row_without_retrying(
    settings: Settings, relay: RelaySink
) -> None:
    """A 550 from the relay for the message marks the row failed after one attempt."""
    relay.refuse_with = "550 5.7.1 message refused"
    async with running(mail_settings(settings, relay_port=relay.port)) as gw:
        await one_click(gw)
        async with asyncio.timeout(20):
            while (row := await outbox_row(settings))["status"] != "failed":  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    assert 1 == row["attempts"]
