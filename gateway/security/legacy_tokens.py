"""Format-1 tokens (I/O layer helper, no I/O): read only, so links issued before AES-SIV work.

Tokens issued before format 2 (``gateway/security/tokens.py``) are ``<kid>.base64url(tag || body)``:
``tag`` is HMAC-SHA256 over ``"cgtok1\\0" purpose "\\0" kid "\\0"`` and the plain text,
truncated to 96 bits; ``body`` is the plain text (4 bytes of expiry in unix minutes, then the
payload) XORed with an HMAC-SHA256 keystream keyed by a second key and seeded with the tag.
Both keys are derived per purpose from the kid's secret.

Nothing issues this format any more. It is verified for as long as such a token can live:
its own expiry decides, and the longest lifetime a link was given is the largest of
``[email] token_ttl_days``, ``[api] preference_link_ttl_days`` and ``[api] confirm_ttl_hours``
in force when it was issued (README "Tokens"). Once that much time has passed since the
upgrade, this module can be deleted with the call in ``TokenCodec.verify``.
"""

from __future__ import annotations

import hmac

from gateway.security.signing import derive_key

TAG_BYTES = 12
EXPIRY_BYTES = 4  # unix minutes
MIN_BYTES = TAG_BYTES + EXPIRY_BYTES


class LegacyKeys:
    """The MAC and keystream keys of one secret for one purpose."""

    __slots__ = ("enc", "mac")

    def __init__(self, secret: bytes, purpose: str) -> None:
        self.mac = derive_key(secret, f"token-mac/{purpose}")
        self.enc = derive_key(secret, f"token-enc/{purpose}")


def _tag(mac_key: bytes, purpose: str, kid: str, plain: bytes) -> bytes:
    head = b"cgtok1\0" + purpose.encode() + b"\0" + kid.encode() + b"\0"
    return hmac.digest(mac_key, head + plain, "sha256")[:TAG_BYTES]


def _xor(enc_key: bytes, tag: bytes, data: bytes) -> bytes:
    stream = bytearray()
    counter = 0
    while len(stream) < len(data):
        stream += hmac.digest(enc_key, tag + counter.to_bytes(4, "big"), "sha256")
        counter += 1
    size = len(data)
    mixed = int.from_bytes(data, "big") ^ int.from_bytes(bytes(stream[:size]), "big")
    return mixed.to_bytes(size, "big")


def open_legacy(
    raw: bytes, kid: str, purpose: str, keys: tuple[LegacyKeys, ...]
) -> tuple[int, bytes] | None:
    """``(expires at, unix seconds; payload)`` of a format-1 token made with one of ``keys``,
    or None. The tag is compared in constant time (``hmac.compare_digest``)."""
    if len(raw) < MIN_BYTES:
        return None
    tag = raw[:TAG_BYTES]
    for pair in keys:
        plain = _xor(pair.enc, tag, raw[TAG_BYTES:])
        if hmac.compare_digest(tag, _tag(pair.mac, purpose, kid, plain)):
            return int.from_bytes(plain[:EXPIRY_BYTES], "big") * 60, plain[EXPIRY_BYTES:]
    return None
