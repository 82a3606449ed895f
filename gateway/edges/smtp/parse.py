"""Inbound mail parsing (I/O layer helper, no I/O): what kind of mail this is and what it says.

Pure functions over ``email.message.Message`` parsed with the ``compat32`` policy (its raw
header access costs a fraction of the default policy's header registry, which matters at
thousands of mails a second): auto-reply detection (RFC 3834), ARF
feedback reports (RFC 5965), delivery status notifications (RFC 3464), and the subject and
first unquoted lines of a human reply. The SMTP handler decides what to do with the answers.
"""

from __future__ import annotations

import contextlib
import io
import re
from dataclasses import dataclass
from email.generator import BytesGenerator
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesHeaderParser, HeaderParser
from email.policy import compat32
from email.utils import getaddresses, parseaddr

_SUBJECT_PREFIX = re.compile(r"^\s*((re|fwd?|aw|wg|sv|vs|tr|rif|enc)\s*(\[\d+\])?\s*:\s*)+", re.I)
# "On Mon, 1 Jan 2026 at 10:00, Acme <news@...> wrote:" and its common translations.
_ATTRIBUTION = re.compile(r"^(on .+ wrote:|le .+ a écrit|am .+ schrieb|el .+ escribió)", re.I)
_QUOTE_MARKERS = frozenset({"-----original message-----", "--", "---------- forwarded message"})
_AUTO_SUBMITTED = frozenset({"auto-generated", "auto-replied", "auto-notified"})
_BULK_PRECEDENCE = frozenset({"bulk", "junk", "list"})
_AUTO_HEADERS = ("X-Autoreply", "X-Autorespond", "X-Autoresponder")
_CRLF = compat32.clone(linesep="\r\n")


def header(msg: Message, name: str) -> str:
    """A header's value as text ('' when absent), RFC 2047 encoded words decoded."""
    value = msg.get(name)
    if value is None:
        return ""
    text = str(value)
    if "=?" in text:
        # A broken encoding keeps its raw form: it must not lose the mail.
        with contextlib.suppress(LookupError, ValueError, UnicodeDecodeError):
            text = str(make_header(decode_header(text)))
    return " ".join(text.split())


def address_of(value: str) -> str:
    """The bare address in a header value such as ``"Ann" <ann@example.org>``."""
    return parseaddr(value)[1].strip()


def auto_reply_reason(msg: Message, mail_from: str) -> str | None:
    """Why this mail must never change consent, or None for a mail a person sent.

    RFC 3834 section 2: ``Auto-Submitted`` other than ``no`` marks automatic mail; a null
    reverse-path (``MAIL FROM:<>``, RFC 5321 section 4.5.5) is a notification; ``Precedence:
    bulk/junk/list`` and the vendor ``X-Autoreply`` headers mark vacation and list mail.
    """
    auto = header(msg, "Auto-Submitted").split(";")[0].strip().lower()
    if auto and auto != "no":
        # The reason is logged: the registered values (RFC 3834 section 5, RFC 5436 section
        # 2.7) as they are, any other text as "other", never the sender's words.
        return f"auto-submitted:{auto if auto in _AUTO_SUBMITTED else 'other'}"
    if mail_from in ("", "<>"):
        return "null-sender"
    if header(msg, "Precedence").lower() in _BULK_PRECEDENCE:
        return "precedence"
    for name in _AUTO_HEADERS:
        if msg.get(name) is not None:
            return name.lower()
    return None


def report_type(msg: Message) -> str | None:
    """``feedback-report`` or ``delivery-status`` for a ``multipart/report`` (RFC 6522)."""
    if msg.get_content_type() != "multipart/report":
        return None
    value = msg.get_param("report-type")
    return value.lower() if isinstance(value, str) else None


def _first_part(msg: Message, *types: str) -> Message | None:
    for part in msg.walk():
        if part.get_content_type() in types:
            return part
    return None


def _fields(part: Message) -> list[Message]:
    """The header blocks of a ``message/feedback-report`` or ``message/delivery-status`` part.

    Python parses them as a list of messages (one per block); if a sender labelled the part
    ``text/plain`` or the parse failed, the text is split into blocks by hand.
    """
    payload = part.get_payload()
    if isinstance(payload, list) and payload:
        blocks_ = [p for p in payload if isinstance(p, Message)]
        if len(blocks_) == len(payload):
            return blocks_
    text = part.get_payload(decode=True)
    raw = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(payload)
    blocks = re.split(r"\r?\n\s*\r?\n", raw.strip())
    return [HeaderParser().parsestr(block + "\n") for block in blocks if block.strip()]


_RETURNED_TEXT = 65_536  # of the returned message's own text searched for our tokens


@dataclass(frozen=True, slots=True)
class Returned:
    """The message a report returns (RFC 5965 section 2 item d, RFC 3464 section 2)."""

    headers: str  # its header block as text
    message_id: str
    text: str  # the start of its plain text, where a footer link may carry our token
    raw: bytes | None  # the whole message as bytes; None when only headers came back


def returned_message(msg: Message) -> Returned:
    """The returned message of a report, as ``message/rfc822`` or only its headers."""
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "message/global"):
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                original = inner[0]
                out = io.BytesIO()
                # No refolding (maxheaderlen=0) and CRLF: the bytes as they came, so our
                # own DKIM signature on them can still verify.
                BytesGenerator(out, mangle_from_=False, maxheaderlen=0, policy=_CRLF).flatten(
                    original
                )
                return Returned(
                    "\n".join(f"{k}: {v}" for k, v in original.items()),
                    header(original, "Message-ID")[:300],
                    _plain_text(original)[:_RETURNED_TEXT],
                    out.getvalue(),
                )
        if ctype in ("text/rfc822-headers", "message/rfc822-headers", "text/global-headers"):
            data = part.get_payload(decode=True)
            text = data.decode("utf-8", "replace") if isinstance(data, bytes) else ""
            fields = HeaderParser(policy=compat32).parsestr(text, headersonly=True)
            return Returned(text, header(fields, "Message-ID")[:300], "", None)
    return Returned("", "", "", None)


def headers_of(raw: bytes) -> Message:
    """The header block of a message given as bytes (compat32, the body left unparsed)."""
    return BytesHeaderParser(policy=compat32).parsebytes(raw, headersonly=True)


def original_headers(msg: Message) -> str:
    """The headers of the message a report returns (``message/rfc822`` or rfc822-headers)."""
    return returned_message(msg).headers


@dataclass(frozen=True, slots=True)
class FeedbackReport:
    """The fields of an ARF report that matter to consent (RFC 5965 section 3.1)."""

    feedback_type: str
    user_agent: str
    original_rcpt_to: tuple[str, ...]
    original_mail_from: str
    arrival_date: str
    original: str  # the returned message's headers, where our tokens sit
    returned: Returned


def feedback_report(msg: Message) -> FeedbackReport | None:
    """Parse an ARF report; None when ``msg`` is not one or lacks its feedback part."""
    if report_type(msg) != "feedback-report":
        return None
    part = _first_part(msg, "message/feedback-report")
    if part is None:
        return None
    values: dict[str, list[str]] = {}
    for block in _fields(part):
        for key, value in block.items():
            values.setdefault(key.lower(), []).append(str(value).strip())

    def one(name: str) -> str:
        return values.get(name, [""])[0]

    return FeedbackReport(
        feedback_type=one("feedback-type").lower(),
        user_agent=one("user-agent"),
        original_rcpt_to=tuple(address_of(v) for v in values.get("original-rcpt-to", [])),
        original_mail_from=address_of(one("original-mail-from")),
        arrival_date=one("arrival-date") or one("received-date"),
        original=(returned := returned_message(msg)).headers,
        returned=returned,
    )


@dataclass(frozen=True, slots=True)
class FailedRecipient:
    """One recipient a DSN reports as permanently failed (RFC 3464 section 2.3)."""

    address: str
    status: str
    diagnostic: str
    original: str = ""  # Original-Recipient: the address as the sender gave it (2.3.1)


def _strip_type(value: str) -> str:
    # Final-Recipient: rfc822; ann@example.org  (RFC 3464 section 2.3.2: address-type ; address)
    return address_of(value.split(";", 1)[1] if ";" in value else value)


def permanent_failures(msg: Message) -> list[FailedRecipient] | None:
    """Permanently failed recipients of a DSN; None when ``msg`` is not a DSN.

    Only ``Action: failed`` with a 5.x.x ``Status`` counts (RFC 3464 section 2.3.3 and RFC
    3463 section 3.1: class 5 is a permanent failure); ``delayed`` and 4.x.x are transient.
    """
    if report_type(msg) != "delivery-status":
        return None
    part = _first_part(msg, "message/delivery-status")
    if part is None:
        return []
    failed: list[FailedRecipient] = []
    for block in _fields(part)[1:]:  # the first block holds the per-message fields
        action = header(block, "Action").lower()
        status = header(block, "Status").split()[0] if header(block, "Status") else ""
        original = header(block, "Original-Recipient")
        recipient = header(block, "Final-Recipient") or original
        if action == "failed" and status.startswith("5") and recipient:
            failed.append(
                FailedRecipient(
                    _strip_type(recipient),
                    status,
                    header(block, "Diagnostic-Code")[:500],
                    _strip_type(original) if original else "",
                )
            )
    return failed


def strip_subject(subject: str) -> str:
    """The subject without reply and forward prefixes (``Re: Fwd: AW:``)."""
    return _SUBJECT_PREFIX.sub("", subject).strip()


def _plain_text(msg: Message) -> str:
    """The first text/plain part (else text/html, tags stripped) that is not an attachment."""
    for wanted in ("text/plain", "text/html"):
        for part in msg.walk():
            if part.get_content_type() != wanted or part.get_filename():
                continue
            data = part.get_payload(decode=True)
            if not isinstance(data, bytes):
                continue
            charset = part.get_content_charset() or "utf-8"
            try:
                text = data.decode(charset, "replace")
            except LookupError:
                text = data.decode("utf-8", "replace")
            if wanted == "text/html":
                text = re.sub(r"(?s)<(script|style).*?</\1>|<[^>]+>", "\n", text)
            return text
    return ""


def first_lines(msg: Message, limit: int = 3) -> list[str]:
    """The first non-empty lines the person wrote, before any quoted text or signature."""
    lines: list[str] = []
    for line in _plain_text(msg).splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if (
            stripped.startswith((">", "____"))
            or _ATTRIBUTION.match(stripped)
            or stripped.lower().rstrip("-").strip() in _QUOTE_MARKERS
            or stripped.lower() in _QUOTE_MARKERS
        ):
            break
        lines.append(stripped[:200])
        if len(lines) >= limit:
            break
    return lines


def sender_address(msg: Message, mail_from: str) -> str:
    """Who wrote the mail: the From address, else the envelope sender."""
    found = [a for _, a in getaddresses([header(msg, "From")]) if a]
    return found[0] if found else mail_from
