"""Request signatures (I/O layer): HMAC-SHA256 over a timestamp and the raw body.

The header is ``X-Gateway-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`` where the MAC
is over ``b"<t>." + body`` with a key derived from ``GATEWAY_SECRET_KEY`` for this one
purpose. The timestamp bounds replay to the configured tolerance, and the comparison runs in
constant time (``hmac.compare_digest``). ``gateway sign`` prints a header for a body.

The parser is total: the header arrives as text in which non-UTF-8 bytes are surrogate
escapes, and anything but ASCII digits for ``t`` (at most 12: "²" passes ``str.isdigit()``
and fails ``int()``, 5,000 digits fail it too) and 64 hex digits for ``v1`` is "malformed",
a 401 like every other refusal here.

During a rotation the keys derived from ``GATEWAY_PREVIOUS_SECRET_KEYS`` verify too, so a
peer still signing with the old secret is not refused (README "Keys and rotation").
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Sequence

HEADER = "X-Gateway-Signature"
WEBHOOK_PURPOSE = "inbound-webhook"  # derive_key purpose of inbound webhook signatures
_MAX_HEADER = 256  # "t=" 12 digits ",v1=" 64 hex digits, with room for spaces and a v0
_STAMP = re.compile(r"[0-9]{1,12}")
_MAC = re.compile(r"[0-9a-fA-F]{64}")


class SignatureError(Exception):
    """The signature is missing, malformed, stale or wrong."""


def derive_key(secret: bytes, purpose: str) -> bytes:
    """A key for one purpose, so a key leaked from one use cannot forge another's MACs."""
    return hmac.new(secret, b"consent-gateway/" + purpose.encode(), hashlib.sha256).digest()


def sign(key: bytes, body: bytes, timestamp: int | None = None) -> str:
    """The header value for ``body``."""
    ts = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(key, f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def verify(
    keys: bytes | Sequence[bytes], header: str | None, body: bytes, *, tolerance: int, now: float
) -> None:
    """Raise ``SignatureError`` unless ``header`` signs ``body`` within ``tolerance`` seconds
    with one of ``keys`` (the current key first)."""
    if not header:
        raise SignatureError(f"missing {HEADER} header")
    if len(header) > _MAX_HEADER:
        raise SignatureError("malformed signature header")
    parts: dict[str, str] = {}
    for item in header.split(","):
        name, sep, value = item.strip(" \t").partition("=")
        if not sep or name in parts:  # a second "t" or "v1" is ambiguous: which one counts?
            raise SignatureError("malformed signature header")
        parts[name] = value
    stamp, given = parts.get("t", ""), parts.get("v1", "")
    if not _STAMP.fullmatch(stamp) or not _MAC.fullmatch(given):
        raise SignatureError("malformed signature header")
    if abs(now - int(stamp)) > tolerance:
        raise SignatureError("signature timestamp outside the allowed window")
    signed = f"{stamp}.".encode() + body
    given_mac = bytes.fromhex(given)  # hex digits only: checked above
    for key in (keys,) if isinstance(keys, bytes) else keys:
        if hmac.compare_digest(hmac.new(key, signed, hashlib.sha256).digest(), given_mac):
            return
    raise SignatureError("signature does not match")
