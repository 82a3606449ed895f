"""Mail with text no database can store is recorded, never deferred forever (451)."""

from __future__ import annotations

import asyncio
import smtplib

import asyncpg
from mailtest import NEWS

from gateway.app import Gateway

pytest_plugins = ["email_fixtures"]


def _deliver(port: int, raw: bytes) -> tuple[int, bytes]:
    """MAIL, RCPT and DATA by hand, so the raw bytes reach the server as they are."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example.org")
        assert 250 == client.docmd("MAIL FROM:<ann@example.org>")[0]
        assert 250 == client.docmd(f"RCPT TO:<{NEWS}>")[0]
        assert 354 == client.docmd("DATA")[0]
        client.send(raw + b"\r\n.\r\n")
        return client.getreply()


async def test_an_unsubscribe_mail_with_a_nul_and_undecodable_headers_is_recorded(
    mail_gateway: Gateway, mdb: asyncpg.Connection
) -> None:
    """A reply whose Subject holds a NUL and whose From and Message-ID hold bytes that are not
    UTF-8: 250 after the commit (not 451, retried forever), and the opt-out recorded."""
    raw = (
        b"From: Ann \xff\xfe <ann@example.org>\r\nTo: " + NEWS.encode() + b"\r\n"
        b"Message-ID: <m1\xff@example.org>\r\nSubject: unsubscribe\x00\r\n\r\nplease"
    )
    assert mail_gateway.smtp_port is not None

    code, _ = await asyncio.to_thread(_deliver, mail_gateway.smtp_port, raw)

    assert 250 == code
    assert "opted_out" == await mdb.fetchval("SELECT state FROM consent")
