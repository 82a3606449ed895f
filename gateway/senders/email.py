"""Confirmation mail sender (I/O layer): outbox rows -> DKIM-signed mail -> aiosmtplib -> relay.

Every mail carries what the rules ask of it:

- ``From`` names the sender: the list's brand and the list address (CAN-SPAM, 16 CFR 316.5:
  accurate header information);
- the postal address and a contact in the footer (16 CFR 316.5(a)(5));
- ``Auto-Submitted: auto-generated`` (RFC 3834 section 5), so nobody's autoresponder answers;
- ``List-Unsubscribe`` and ``List-Unsubscribe-Post`` (RFC 8058 section 3), both covered by the
  DKIM signature (section 4 requires it; dkimpy leaves List-Unsubscribe-Post out unless told);
- a Message-ID made from the outbox id, so a resend after a lost reply is recognisable, and
  carrying the list's token, so a reply's In-Reply-To finds the list;
- an envelope sender naming the outbox row (VERP, ``[email] bounce_verp``), so a bounce is
  tied to the message and recipient it is about.

Every header is ASCII: the list headers are written by ``list_headers`` (never encoded
words), and the rest leave the email package as plain text or, for a non-ASCII phrase or
subject, as the encoded words RFC 2047 allows there.

A relay that is down or answers 4xx is a temporary ``SendError`` (the outbox retries with
backoff); a 5xx for the recipient is permanent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from email import policy
from email.message import EmailMessage
from email.utils import formataddr, formatdate
from pathlib import Path

import aiosmtplib
import dkim  # type: ignore[import-untyped]  # dkimpy ships no type hints

from gateway.email.links import ONE_CLICK_VALUE, Target, UnsubscribeLinks
from gateway.email.settings import EmailSettings
from gateway.errors import ConfigError
from gateway.logs import mask_address
from gateway.senders.base import OutboxRow, SendError

log = logging.getLogger(__name__)

# RFC 6376 section 5.4.1 recommends From, Subject, Date, To, Message-ID and the list headers;
# RFC 8058 section 4 requires List-Unsubscribe and List-Unsubscribe-Post to be signed.
SIGNED_HEADERS = (
    b"from", b"to", b"subject", b"date", b"message-id", b"mime-version", b"content-type",
    b"content-transfer-encoding", b"auto-submitted", b"list-id", b"list-unsubscribe",
    b"list-unsubscribe-post",
)  # fmt: skip
_SUBJECTS = {
    "opt_out": "You have been unsubscribed from {title}",
    "opt_in": "Welcome to {title}",
    "pending": "Please confirm your subscription to {title}",
    "already_opted_in": "You are already subscribed to {title}",
    "help": "{title}: help",
}
_MAX_PARALLEL = 10  # connections to the relay at once


def list_headers(brand: str, list_address: str, uris: list[str]) -> bytes:
    """``List-Id``, ``List-Unsubscribe`` and ``List-Unsubscribe-Post`` as header lines.

    ``List-Unsubscribe`` is the angle-bracketed URIs separated by commas and folded only
    after a comma (RFC 2369 section 2; folding is a CRLF before white space, RFC 5322
    section 2.2.3), so no line breaks inside a URI and each stays under the 998-octet limit.
    Only the ``List-Id`` phrase may be an encoded word (RFC 2919 section 3, RFC 2047 section
    5(3)); the list identifier in angle brackets never is.
    """
    list_id = formataddr((brand, list_address.replace("@", ".")), charset="utf-8")
    lines = [
        f"List-Id: {list_id}",
        "List-Unsubscribe: " + ",\r\n ".join(uris),
        f"List-Unsubscribe-Post: {ONE_CLICK_VALUE}",
    ]
    return "".join(line + "\r\n" for line in lines).encode("ascii")


def dkim_key_from_env(env: Mapping[str, str]) -> bytes | None:
    """The DKIM private key (PEM) from GATEWAY_DKIM_PRIVATE_KEY or ..._FILE, if set."""
    text = env.get("GATEWAY_DKIM_PRIVATE_KEY", "").strip()
    if text:
        return text.encode()
    path = env.get("GATEWAY_DKIM_PRIVATE_KEY_FILE", "").strip()
    if path:
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"GATEWAY_DKIM_PRIVATE_KEY_FILE: cannot read {path}") from exc
    return None


class EmailSender:
    """The ``OutboundSender`` for channel ``email``."""

    def __init__(
        self,
        links: UnsubscribeLinks,
        *,
        dkim_key: bytes | None,
        relay_password: str | None = None,
    ) -> None:
        self._links = links
        self._s: EmailSettings = links.settings
        if self._s.dkim_domain and dkim_key is None:
            raise ConfigError("email.dkim_domain is set but GATEWAY_DKIM_PRIVATE_KEY(_FILE) is not")
        self._key = dkim_key
        self._password = relay_password
        self._parallel = asyncio.Semaphore(_MAX_PARALLEL)

    def build(self, row: OutboxRow) -> tuple[bytes, str]:
        """The signed message for ``row`` and its Message-ID."""
        catalog = self._links.lists.get(row.sender)
        if catalog is None:
            raise SendError("not a configured email list", temporary=False)
        program = (
            catalog.program(row.program)
            if row.program and catalog.has_program(row.program)
            else catalog.default_programs[0]
        )
        title = program.title if row.program else catalog.brand
        domain = self._s.dkim_domain or row.sender.rpartition("@")[2]
        token = self._links.token(Target(row.sender, row.recipient))
        message_id = f"<c{row.id}.{token}@{domain}>"
        msg = EmailMessage(policy=policy.SMTP)
        msg["From"] = formataddr((catalog.brand, row.sender))
        msg["To"] = row.recipient
        msg["Subject"] = _SUBJECTS.get(row.kind, "{title}").format(title=title)
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        msg["Message-ID"] = message_id
        msg["Auto-Submitted"] = "auto-generated"
        footer = [f"{catalog.brand}", f"Contact: {program.help_contact}"]
        if self._s.postal_address:
            footer.insert(1, self._s.postal_address)
        footer.append(f"Privacy: {program.privacy_url}")
        msg.set_content(f"{row.body}\n\n-- \n" + "\n".join(footer) + "\n")
        head, _, body = msg.as_bytes().partition(b"\r\n\r\n")
        # The list headers are written here, not by the email package: its SMTP policy turns
        # a value it cannot fold at a space into RFC 2047 encoded words, and a List-Unsubscribe
        # so encoded is no URI to a mail client (RFC 2369 section 2, RFC 8058 section 3).
        uris = self._links.unsubscribe_uris(Target(row.sender, row.recipient))
        lists = list_headers(catalog.brand, row.sender, uris)
        raw = head + b"\r\n" + lists + b"\r\n" + body
        if self._key is not None:
            signature = dkim.sign(
                raw,
                self._s.dkim_selector.encode(),
                self._s.dkim_domain.encode(),
                self._key,
                include_headers=list(SIGNED_HEADERS),
            )
            raw = bytes(signature) + raw
        return raw, message_id

    def available(self) -> bool:
        """Always: whether the relay is up is learnt by sending."""
        return True

    async def send(self, row: OutboxRow) -> str | None:
        """Relay one confirmation; return its Message-ID."""
        raw, message_id = await asyncio.to_thread(self.build, row)
        s = self._s
        try:
            async with self._parallel:
                await aiosmtplib.send(
                    raw,
                    sender=self._links.bounce_address(row.id) or row.sender,
                    recipients=[row.recipient],
                    hostname=s.relay_host,
                    port=s.relay_port,
                    start_tls=s.relay_starttls,
                    username=s.relay_username or None,
                    password=self._password if s.relay_username else None,
                    timeout=s.relay_timeout_seconds,
                )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            raise SendError(f"relay refused the recipient: {codes}", temporary=all(
                400 <= c < 500 for c in codes)) from exc  # fmt: skip
        except aiosmtplib.SMTPResponseException as exc:
            raise SendError(f"relay answered {exc.code}", temporary=exc.code < 500) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise SendError(f"relay unreachable: {type(exc).__name__}", temporary=True) from exc
        log.info(
            "confirmation relayed",
            extra={"outbox_id": row.id, "recipient": mask_address(row.recipient)},
        )
        return message_id
