"""Consent imports (pure layer): rows of the exports operators arrive with, read one at a time.

Layouts, as the systems write them:

- ``listmonk``: the subscribers export (``GET /api/subscribers/export``; listmonk's
  cmd/subscribers.go writes the header ``uuid,email,name,attributes,status,created_at,
  updated_at``, times in Go's ``time.Time.String()`` form, e.g. ``2024-03-01 09:30:00.5
  +0000 UTC``). Subscriber status ``enabled`` is read as an opt-in given at ``created_at``,
  ``blocklisted`` as an opt-out at ``updated_at``; ``disabled`` says nothing about consent and
  is skipped.
- ``mailchimp``: an audience export (a zip of subscribed, unsubscribed and cleaned CSVs:
  ``Email Address`` and the merge fields, then ``MEMBER_RATING, OPTIN_TIME, OPTIN_IP,
  CONFIRM_TIME, CONFIRM_IP, ..., LAST_CHANGED, LEID, EUID``; the unsubscribed file adds
  ``UNSUB_TIME, UNSUB_CAMPAIGN_TITLE, UNSUB_CAMPAIGN_ID, UNSUB_REASON``, the cleaned one
  ``CLEAN_TIME``; times ``YYYY-MM-DD HH:MM:SS``, read as UTC). A row with ``UNSUB_TIME`` is an
  opt-out; one with ``CLEAN_TIME`` bounced, which withdraws nothing, and is skipped; any other
  is an opt-in at ``OPTIN_TIME`` (confirmed at ``CONFIRM_TIME`` when it has one).
- ``twilio``: the record layout of Twilio's Consent Management API (``contact_id`` in E.164,
  ``sender_id``, ``status`` ``opt-in`` or ``opt-out``, ``source`` ``website``, ``offline``,
  ``opt-in-message``, ``opt-out-message`` or ``others``, ``date_of_consent`` in ISO 8601,
  ``correlation_id``), as an opt-out list is exported for it.
- ``gateway``: this gateway's own consent export (gateway/store/consent_exports.py).

Files are CSV (UTF-8, a BOM allowed) or JSON: an array of objects or one object per line,
with the keys of the CSV header. Both are read incrementally, so a file of any size is read
in bounded memory; ``BytesCounter`` says how far the reader is, for the progress bar.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import BinaryIO

LAYOUTS = ("listmonk", "mailchimp", "twilio", "gateway")
_GO_TIME = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(\.\d+)? ([+-]\d{4})(?: [A-Za-z0-9+-]+)?(?: m=.*)?$"
)
_JSON_CHUNK = 1 << 16
_MAX_OBJECT = 1 << 20  # one row of an import is a few hundred bytes


class ImportError_(ValueError):  # noqa: N801 - not the builtin ImportError
    """A row or a file that cannot be read as its layout says."""


@dataclass(frozen=True, slots=True)
class ImportRow:
    """One consent statement taken from another system."""

    line: int
    contact: str
    action: str  # "opt_in" or "opt_out"
    original_time: datetime
    original_method: str
    program: str | None = None  # from the file (``gateway`` layout); else the command's
    confirmed_time: datetime | None = None  # a double opt-in the source saw confirmed
    disclosure: str = ""
    evidence: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Skipped:
    """A row that says nothing about consent, or cannot be read; ``reason`` is a code."""

    line: int
    reason: str


def parse_time(text: str) -> datetime:
    """ISO 8601, Go's ``time.Time.String()``, or ``YYYY-MM-DD HH:MM:SS`` (UTC); aware."""
    value = text.strip()
    if not value:
        raise ImportError_("empty time")
    go = _GO_TIME.match(value)
    if go:
        fraction = (go.group(2) or "")[:7].ljust(7, "0") if go.group(2) else ""
        value = f"{go.group(1)}{fraction}{go.group(3)}"
        parsed = datetime.strptime(
            value, "%Y-%m-%d %H:%M:%S.%f%z" if fraction else "%Y-%m-%d %H:%M:%S%z"
        )
        return parsed.astimezone(UTC)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ImportError_("unreadable time") from exc
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


class BytesCounter:
    """Wraps a binary file: lines as text, and how many bytes were read so far."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.read = 0

    def lines(self) -> Iterator[str]:
        first = True
        for chunk in self.raw:
            self.read += len(chunk)
            text = chunk.decode("utf-8")
            if first:
                text, first = text.removeprefix("\ufeff"), False
            yield text


def _json_objects(chunks: Iterable[str]) -> Iterator[dict[str, object]]:
    """Objects of a JSON array, or of JSON Lines, from text blocks (``_utf8_blocks``)."""
    decoder = json.JSONDecoder()
    buffer = ""
    started = False
    for chunk in chunks:
        buffer += chunk
        pos = 0
        while True:
            while pos < len(buffer) and buffer[pos] in " \t\r\n,":
                pos += 1
            if not started and pos < len(buffer) and buffer[pos] == "[":
                started, pos = True, pos + 1
                continue
            if pos < len(buffer) and buffer[pos] == "]":
                pos += 1
                continue
            if pos >= len(buffer):
                break
            try:
                value, end = decoder.raw_decode(buffer, pos)
            except json.JSONDecodeError:
                break  # incomplete: wait for more text
            if not isinstance(value, dict):
                raise ImportError_("a JSON import holds objects only")
            yield value
            pos = end
            started = True
        buffer = buffer[pos:]
        if len(buffer) > _MAX_OBJECT:
            raise ImportError_("a JSON object over 1 MiB, or a malformed file")
    if buffer.strip(" \t\r\n,]"):
        raise ImportError_("the JSON file ends inside a value")


def records(counter: BytesCounter, fmt: str) -> Iterator[tuple[int, dict[str, str]]]:
    """(line or item number, fields as text) of a CSV or JSON file."""
    if fmt == "json":
        for n, obj in enumerate(_json_objects(_utf8_blocks(counter)), start=1):
            yield n, {str(k): "" if v is None else str(v) for k, v in obj.items()}
        return
    reader = csv.DictReader(counter.lines())
    for n, row in enumerate(reader, start=2):
        yield n, {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}


def _utf8_blocks(counter: BytesCounter) -> Iterator[str]:
    """64 KiB text blocks of the file, never split inside a UTF-8 character."""
    raw = counter.raw
    carry = b""
    first = True
    while chunk := raw.read(_JSON_CHUNK):
        counter.read += len(chunk)
        data = carry + chunk
        cut = len(data)
        while cut > 0 and cut > len(data) - 4 and (data[cut - 1] & 0xC0) == 0x80:
            cut -= 1
        if cut > 0 and data[cut - 1] >= 0xC0:
            cut -= 1  # a lead byte whose continuation is in the next block
        carry = data[cut:]
        text = data[:cut].decode("utf-8")
        if first:
            text, first = text.removeprefix("\ufeff"), False
        yield text
    if carry:
        yield carry.decode("utf-8")


def _need(row: Mapping[str, str], *names: str) -> None:
    missing = [n for n in names if n not in row]
    if missing:
        raise ImportError_(f"the file lacks the column(s) {', '.join(missing)}")


def _listmonk(line: int, row: Mapping[str, str]) -> ImportRow | Skipped:
    _need(row, "email", "status", "created_at", "updated_at")
    status = row["status"].lower()
    if status not in ("enabled", "blocklisted"):
        return Skipped(line, f"listmonk_status_{status or 'empty'}")
    opt_in = status == "enabled"
    return ImportRow(
        line=line,
        contact=row["email"],
        action="opt_in" if opt_in else "opt_out",
        original_time=parse_time(row["created_at"] if opt_in else row["updated_at"]),
        original_method=f"listmonk subscriber {status}",
        evidence={"source_id": row.get("uuid", "")},
    )


def _mailchimp(line: int, row: Mapping[str, str]) -> ImportRow | Skipped:
    _need(row, "Email Address")
    ids = {"source_id": row.get("LEID", ""), "source_euid": row.get("EUID", "")}
    if row.get("CLEAN_TIME"):
        return Skipped(line, "mailchimp_cleaned")  # a bounce withdraws nothing
    if row.get("UNSUB_TIME"):
        reason = row.get("UNSUB_REASON", "")
        return ImportRow(
            line=line,
            contact=row["Email Address"],
            action="opt_out",
            original_time=parse_time(row["UNSUB_TIME"]),
            original_method="mailchimp unsubscribed",
            evidence={**ids, **({"unsubscribe_reason": reason} if reason else {})},
        )
    when = row.get("OPTIN_TIME") or row.get("CONFIRM_TIME") or row.get("LAST_CHANGED", "")
    confirmed = row.get("CONFIRM_TIME", "")
    return ImportRow(
        line=line,
        contact=row["Email Address"],
        action="opt_in",
        original_time=parse_time(when),
        original_method="mailchimp subscribed",
        confirmed_time=parse_time(confirmed) if confirmed else None,
        evidence={
            **ids,
            "optin_ip": row.get("OPTIN_IP", ""),
            "confirm_ip": row.get("CONFIRM_IP", ""),
        },
    )


def _twilio(line: int, row: Mapping[str, str]) -> ImportRow | Skipped:
    _need(row, "contact_id", "status")
    status = row["status"].lower()
    if status not in ("opt-in", "opt-out"):
        return Skipped(line, f"twilio_status_{status or 'empty'}")
    when = row.get("date_of_consent", "")
    if not when:
        return Skipped(line, "twilio_no_date_of_consent")  # no time: no evidence of order
    return ImportRow(
        line=line,
        contact=row["contact_id"],
        action="opt_in" if status == "opt-in" else "opt_out",
        original_time=parse_time(when),
        original_method=f"twilio {row.get('source') or 'others'}",
        evidence={
            "source_id": row.get("correlation_id", ""),
            "source_sender": row.get("sender_id", ""),
        },
    )


def _gateway(line: int, row: Mapping[str, str]) -> ImportRow | Skipped:
    _need(row, "address", "program", "state", "since")
    state = row["state"]
    if state not in ("opted_in", "opted_out"):
        return Skipped(line, f"gateway_state_{state or 'empty'}")
    evidence: dict[str, str] = {}
    if row.get("evidence"):
        try:
            raw = json.loads(row["evidence"])
        except ValueError:
            raw = {}
        if isinstance(raw, dict):
            evidence = {f"original_{k}": str(v) for k, v in list(raw.items())[:16]}
    return ImportRow(
        line=line,
        contact=row["address"],
        action="opt_in" if state == "opted_in" else "opt_out",
        original_time=parse_time(row["since"]),
        original_method=f"gateway {row.get('method') or 'unknown'}",
        program=row["program"],
        disclosure=evidence.get("original_disclosure_version", "")
        or evidence.get("original_disclosure", ""),
        evidence={**evidence, "source_id": row.get("last_seq", "")},
    )


_PARSERS = {"listmonk": _listmonk, "mailchimp": _mailchimp, "twilio": _twilio, "gateway": _gateway}


def parse(counter: BytesCounter, layout: str, fmt: str) -> Iterator[ImportRow | Skipped]:
    """The rows of a file, in order: an ``ImportRow`` or a ``Skipped`` for each."""
    parser = _PARSERS[layout]
    for line, row in records(counter, fmt):
        try:
            yield parser(line, row)
        except ImportError_ as exc:
            if "lacks the column" in str(exc):
                raise
            yield Skipped(line, "unreadable_row")
