"""Structured logs (I/O layer): JSON lines with phone numbers and addresses masked, never bodies.

DESIGN.md invariant 8: a log line may carry a masked address (``+1*******23``,
``j***@example.org``) and ids, never a message body. ``mask()`` is applied to the fields we
pass and, as a second line of defence, to the rendered message text.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

import orjson

# A "+" number with any separators, or a bare run of 10-15 digits; dates and times
# ("2026-11-28 00:03") are left alone.
_PHONE = r"\+\d[\d\-\s().]{6,}\d|(?<![\d.])\d{10,15}(?![\d.])"
_EMAIL = r"(?P<first>[A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]*@(?P<domain>[A-Za-z0-9.\-]+)"
# One pass over the text for both kinds: an address is tried first at each position, so a
# number inside an address's local part is masked as part of the address.
_ADDRESS_RE = re.compile(f"{_EMAIL}|{_PHONE}")
# Every match of _ADDRESS_RE holds an "@", a "+" or two digits in a row: text without any
# (status codes, intents, most ids) is returned as it is, after a scan a fraction as costly.
_MAY_HOLD_ADDRESS = re.compile(r"[@+]|\d\d")
# orjson writes a line in a fraction of the json module's time, and a line is written for every
# inbound message; what it refuses (a lone surrogate, an integer past 64 bits, a non-string
# key) goes through the json module instead. Either way the line is UTF-8 JSON.
_FALLBACK = json.JSONEncoder(default=str, ensure_ascii=False)
_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}


def mask_phone(number: str) -> str:
    """Keep the leading ``+`` and country digit and the last two digits: enough to correlate."""
    digits = [c for c in number if c.isdigit()]
    if len(digits) < 5:
        return "*" * len(digits)
    head = ("+" if number.startswith("+") else "") + digits[0]
    return head + "*" * (len(digits) - 3) + "".join(digits[-2:])


def mask_email(address: str) -> str:
    """Keep the first letter of the local part and the domain."""
    local, _, domain = address.rpartition("@")
    if not local:
        return "***"
    return f"{local[0]}***@{domain}"


def mask(value: str) -> str:
    """Mask any phone number or email address inside ``value``."""
    if _MAY_HOLD_ADDRESS.search(value) is None:
        return value
    return _ADDRESS_RE.sub(_masked, value)


def _masked(match: re.Match[str]) -> str:
    first = match.group("first")
    if first is not None:
        return f"{first}***@{match.group('domain')}"
    return mask_phone(match.group(0))


def mask_address(address: str) -> str:
    """Mask one contact address, phone or email."""
    return mask_email(address) if "@" in address else mask_phone(address)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; extra fields passed with ``extra=`` are included, masked."""

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._second_text = ""

    def _timestamp(self, created: float) -> str:
        """RFC 3339 UTC with milliseconds; the part up to the second is formatted once a second."""
        second = int(created)
        if second != self._second:
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._second_text}.{int((created - second) * 1000):03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self._timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": mask(record.getMessage()),
        }
        fields = record.__dict__
        for key in fields.keys() - _RESERVED:  # the extras: one set difference, not a scan
            value = fields[key]
            if not key.startswith("_"):
                entry[key] = mask(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exc"] = mask(self.formatException(record.exc_info))
        try:
            return orjson.dumps(entry, default=str).decode()
        except orjson.JSONEncodeError:
            return _FALLBACK.encode(entry)


def configure(level: str) -> None:
    """Send every gateway log record to stderr as JSON."""
    # The logging HOWTO's "Optimization" switches: the JSON line carries none of the caller's
    # file and line, thread or process, and collecting them for every record costs about a
    # third of a line (a line per inbound message).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The embedded PostgreSQL narrates every start and stop at INFO; keep its warnings only.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
