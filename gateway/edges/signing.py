"""Request signatures (I/O layer): HMAC-SHA256 over a timestamp and the raw body.

The header is ``X-Gateway-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`` where the MAC
is over ``b"<t>." + body`` with a key derived from ``GATEWAY_SECRET_KEY`` for this one
purpose. The timestamp bounds replay to the configured tolerance, and the comparison runs in
constant time (``hmac.compare_digest``). ``gateway sign`` prints a header for a body.

During a rotation the keys derived from ``GATEWAY_PREVIOUS_SECRET_KEYS`` verify too, so a
peer still signing with the old secret is not refused (README "Keys and rotation").
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence

HEADER = "X-Gateway-Signature"


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
    parts: dict[str, str] = {}
    for item in header.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep:
            raise SignatureError("malformed signature header")
        parts[name] = value
    stamp, given = parts.get("t", ""), parts.get("v1", "")
    if not stamp.isdigit() or not given:
        raise SignatureError("malformed signature header")
    if abs(now - int(stamp)) > tolerance:
        raise SignatureError("signature timestamp outside the allowed window")
    signed = f"{stamp}.".encode() + body
    for key in (keys,) if isinstance(keys, bytes) else keys:
        expected = hmac.new(key, signed, hashlib.sha256).hexdigest()
        if hmac.compare_digest(expected.encode(), given.encode()):
            return
    raise SignatureError("signature does not match")
