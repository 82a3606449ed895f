"""Inbound mail samples shaped like the RFCs' examples and large providers' reports."""

from __future__ import annotations

import uuid
from email.message import EmailMessage

import dkim  # type: ignore[import-untyped]  # dkimpy ships no type hints


def plain(
    subject: str, body: str, *, sender: str = "Ann <ann.reader@example.org>", to: str,
    headers: dict[str, str] | None = None,
) -> bytes:  # fmt: skip
    """A person's mail (or an auto-reply, with ``headers``)."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@mail.example.org>"
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    return msg.as_bytes()


def arf(
    original_headers: str,
    *,
    feedback_type: str = "abuse",
    rcpt_to: str | None = None,
    headers_only: bool = False,
    message_id: str = "<arf-1@fbl.example.net>",
    returned: bytes | None = None,
    sender: str = "<feedback@fbl.example.net>",
) -> bytes:
    """An RFC 5965 report: human part, message/feedback-report, then the original or its headers.

    With ``headers_only`` the third part is text/rfc822-headers, as Yahoo's and Microsoft's
    feedback loops send it, usually with the recipient redacted; ``returned`` is a whole
    message returned byte for byte instead of ``original_headers``.
    """
    fields = [
        f"Feedback-Type: {feedback_type}",
        "User-Agent: ExampleFBL/2.1",
        "Version: 1",
        "Original-Mail-From: <bounces@lists.acme-health.example>",
        "Arrival-Date: Thu, 26 Nov 2026 14:00:00 +0000",
        "Reported-Domain: lists.acme-health.example",
        "Source-IP: 192.0.2.25",
    ]
    if rcpt_to:
        fields.insert(4, f"Original-Rcpt-To: <{rcpt_to}>")
    third = (
        "Content-Type: text/rfc822-headers\r\n\r\n" + original_headers + "\r\n"
        if headers_only
        else "Content-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n"
        + (returned.decode() if returned is not None else
           original_headers + "\r\nBuy our vitamins today.\r\n")
    )  # fmt: skip
    return (
        f"From: {sender}\r\n"
        "To: <abuse@lists.acme-health.example>\r\n"
        "Subject: FW: Your monthly health tips\r\n"
        "Date: Thu, 26 Nov 2026 17:40:36 +0000\r\n"
        f"Message-ID: {message_id}\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report;\r\n'
        '\tboundary="fbl_7Hk2_boundary"\r\n\r\n'
        "--fbl_7Hk2_boundary\r\n"
        'Content-Type: text/plain; charset="US-ASCII"\r\n\r\n'
        "This is an email abuse report for a message received from 192.0.2.25.\r\n\r\n"
        "--fbl_7Hk2_boundary\r\n"
        "Content-Type: message/feedback-report\r\n\r\n"
        + "\r\n".join(fields) + "\r\n\r\n"
        "--fbl_7Hk2_boundary\r\n" + third +
        "--fbl_7Hk2_boundary--\r\n"
    ).encode()  # fmt: skip


def original(token_header: str | None, *, to: str = "ann.reader@example.org") -> str:
    """Headers of a list mail we sent, as a report returns them."""
    lines = [
        "Received: from mta.acme-health.example (192.0.2.25) by mx.example.net",
        "From: Acme Health <news@lists.acme-health.example>",
        f"To: <{to}>",
        "Subject: Your monthly health tips",
        "Date: Wed, 25 Nov 2026 09:00:00 +0000",
        "Message-ID: <campaign-77.1@lists.acme-health.example>",
    ]
    if token_header:
        lines.append(token_header)
    return "\r\n".join(lines)


def dsn(returned_headers: str, *, failed: str, delayed: str | None = None,
        message_id: str = "<dsn-1@mx.example.org>") -> bytes:  # fmt: skip
    """An RFC 3464 report: one permanent failure (5.1.1) and optionally one delayed recipient."""
    blocks = [
        "Reporting-MTA: dns; mx.example.org\r\nArrival-Date: Thu, 26 Nov 2026 10:00:00 +0000",
        f"Final-Recipient: rfc822; {failed}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        f"Remote-MTA: dns; mx.example.org\r\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 <{failed}>: Recipient address rejected",
    ]
    if delayed:
        blocks.append(
            f"Final-Recipient: rfc822; {delayed}\r\nAction: delayed\r\nStatus: 4.4.1\r\n"
            "Diagnostic-Code: smtp; 421 4.4.1 connection timed out"
        )
    return (
        "From: Mail Delivery Subsystem <MAILER-DAEMON@mx.example.org>\r\n"
        "To: <bounces@lists.acme-health.example>\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Auto-Submitted: auto-replied\r\n"
        f"Message-ID: {message_id}\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=delivery-status;\r\n"
        '\tboundary="dsn_4Qz_boundary"\r\n\r\n'
        "--dsn_4Qz_boundary\r\n"
        "Content-Type: text/plain\r\n\r\n"
        "Your message could not be delivered to one or more recipients.\r\n\r\n"
        "--dsn_4Qz_boundary\r\n"
        "Content-Type: message/delivery-status\r\n\r\n"
        + "\r\n\r\n".join(blocks) + "\r\n\r\n"
        "--dsn_4Qz_boundary\r\n"
        "Content-Type: text/rfc822-headers\r\n\r\n" + returned_headers + "\r\n"
        "--dsn_4Qz_boundary--\r\n"
    ).encode()  # fmt: skip


def signed(raw: bytes, domain: str, private_pem: bytes) -> bytes:
    """``raw`` with a DKIM-Signature of ``domain`` (selector sel1) over its main headers."""
    signature = dkim.sign(
        raw, b"sel1", domain.encode(), private_pem,
        include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
    )  # fmt: skip
    return bytes(signature) + raw


def our_message(*, to: str, message_id: str = "<campaign-78.1@lists.acme-health.example>") -> bytes:
    """A list mail of ours as a whole message, with no token in it anywhere."""
    return (
        "From: Acme Health <news@lists.acme-health.example>\r\n"
        f"To: <{to}>\r\n"
        "Subject: Your monthly health tips\r\n"
        "Date: Wed, 25 Nov 2026 09:00:00 +0000\r\n"
        f"Message-ID: {message_id}\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
        "Drink water.\r\n"
    ).encode()
