"""Structured logs (I/O layer): JSON lines with phone numbers and addresses masked, never bodies.

A log line may carry a masked address (``+1*******23``, ``j***@example.org``) and ids, never a
message body (README "No PII in logs"). ``mask()`` is applied to the fields we pass and, as a
second line of defence, to the rendered message text.

Nobody outside may flood them either: ``RateLimit`` bounds repeated lines per key, and the
formatter writes a traceback in full only the first time in ``traceback_every`` seconds that
the same logger raised the same exception type at the same line; the repeats are one short
line each (``"traceback": "repeated"``), and the next full one counts them.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Hashable
from types import TracebackType
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


# A record logged with ``extra={HIDE_EXC_MESSAGE: True}`` gets its traceback without the
# exception's message: a message can quote the input that caused it (``int('²')``, a request
# line), and the frames and type are what an operator needs. Leading "_": never a field.
HIDE_EXC_MESSAGE = "_hide_exc_message"


class RateLimit:
    """At most ``burst`` events per key in each ``per_seconds`` window; the rest are counted.

    At most ``max_keys`` keys are remembered (the least recently started window is forgotten
    first), so keys an outsider can vary cost bounded memory.
    """

    def __init__(
        self,
        per_seconds: float,
        *,
        burst: int = 1,
        max_keys: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._per = per_seconds
        self._burst = burst
        self._max_keys = max_keys
        self._clock = clock
        # key -> [window start, events allowed in it, events refused since the last allowed]
        self._windows: OrderedDict[Hashable, list[float]] = OrderedDict()

    def allow(self, key: Hashable) -> int | None:
        """None if this event is over the limit (it is counted); otherwise how many events of
        this key were refused since the last one allowed."""
        now = self._clock()
        window = self._windows.get(key)
        if window is None or now - window[0] >= self._per:
            refused = 0 if window is None else int(window[2])
            self._windows[key] = [now, 1, 0]
            self._windows.move_to_end(key)
            while len(self._windows) > self._max_keys:
                self._windows.popitem(last=False)
            return refused
        if window[1] < self._burst:
            window[1] += 1
            return int(window[2])
        window[2] += 1
        return None


def _raised_at(tb: TracebackType | None) -> str:
    """``file:line`` of the innermost frame: where the exception was raised."""
    where = "?"
    for frame, line in traceback.walk_tb(tb):
        where = f"{frame.f_code.co_filename}:{line}"
    return where


def _frames_only(exc_type: type[BaseException], tb: TracebackType | None) -> str:
    """A traceback's frames and the exception's type, without its message."""
    frames = "".join(traceback.format_list(traceback.extract_tb(tb)))
    name = f"{exc_type.__module__}.{exc_type.__qualname__}"
    return f"Traceback (most recent call last):\n{frames}{name} (message not logged)"


class JsonFormatter(logging.Formatter):
    """One JSON object per line; extra fields passed with ``extra=`` are included, masked."""

    def __init__(self, *, traceback_every: float = 60.0) -> None:
        super().__init__()
        self._second = -1
        self._second_text = ""
        self._tracebacks = RateLimit(traceback_every)

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
            entry.update(self._exception(record))
        try:
            return orjson.dumps(entry, default=str).decode()
        except orjson.JSONEncodeError:
            return _FALLBACK.encode(entry)

    def _exception(self, record: logging.LogRecord) -> dict[str, Any]:
        """The ``exc`` field, or a short stand-in when the same traceback was written lately."""
        exc_info = record.exc_info
        assert exc_info is not None
        exc_type, _, tb = exc_info
        if exc_type is None:  # exc_info=True outside an except block
            return {"exc": self.formatException(exc_info)}
        where = _raised_at(tb)
        repeats = self._tracebacks.allow((record.name, exc_type, where))
        if repeats is None:
            return {"exc_type": exc_type.__name__, "exc_at": where, "traceback": "repeated"}
        if record.__dict__.get(HIDE_EXC_MESSAGE):
            text = _frames_only(exc_type, tb)
        else:
            text = self.formatException(exc_info)
        fields: dict[str, Any] = {"exc": mask(text)}
        if repeats:
            fields["tracebacks_repeated"] = repeats
        return fields


class LimitedLog:
    """Log lines an outsider can cause (a malformed request, a timeout), at most ``burst`` per
    key in ``per_seconds``; the next line written for a key says how many were left out."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        per_seconds: float = 60.0,
        burst: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._limit = RateLimit(per_seconds, burst=burst, clock=clock)

    def log(self, level: int, msg: str, *, key: Hashable, **fields: Any) -> None:
        """``logger.log(level, msg)`` with ``fields`` as extras, unless ``key`` is over."""
        if not self._logger.isEnabledFor(level):
            return
        left_out = self._limit.allow(key)
        if left_out is None:
            return
        if left_out:
            fields["left_out"] = left_out
        self._logger.log(level, msg, extra=fields)


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
