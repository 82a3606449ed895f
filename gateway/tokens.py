"""Signed, opaque tokens (I/O layer helper, no I/O): unsubscribe links, preference-page links.

A token is ``<kid>.<base64url(tag || ciphertext)>``:

- ``kid`` names the key that made it. Keys come from ``GATEWAY_TOKEN_KEYS`` as
  ``kid:secret,kid:secret`` (the first signs, every listed one verifies, so a rotation keeps
  old links working; removing a kid revokes every token it made). Without that variable one
  key ``k0`` is derived from ``GATEWAY_SECRET_KEY``; keys ``k0`` derived from each of
  ``GATEWAY_PREVIOUS_SECRET_KEYS`` still verify, so rotating the secret keeps issued links.
- ``tag`` is HMAC-SHA256 over the purpose, the kid, the expiry and the payload, truncated to
  96 bits, and compared with ``hmac.compare_digest`` (constant time).
- The expiry and payload are encrypted with an HMAC-SHA256 keystream keyed by a second key
  and seeded with the tag (a synthetic-IV construction): the link carries the recipient, but
  nobody can read the address out of a URL (RFC 8058 section 3.1 asks the URI to identify the
  recipient and list; CAN-SPAM and GDPR make us keep the address out of logs and referrers).

The purpose is bound into both keys, so a token made for one purpose (``unsubscribe``) never
verifies for another (``preferences``). Tokens are deterministic for a given payload and
expiry hour, which keeps repeated header requests cacheable.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from gateway.edges.signing import derive_key
from gateway.errors import BadInput, ConfigError

_TAG_BYTES = 12
_EXPIRY_BYTES = 4  # unix minutes: good until the year 10136
_KID_RE = re.compile(r"^[A-Za-z0-9]{1,8}$")
_MIN_SECRET = 32
_MAX_TOKEN = 512
DEFAULT_KID = "k0"


class TokenError(BadInput):
    """A token that is malformed, forged, from an unknown (revoked) key, or expired."""

    code = "bad_token"


class MalformedToken(TokenError):
    """Not a token at all."""

    code = "malformed_token"


class ForgedToken(TokenError):
    """Well formed, but no key we hold made it (forged, altered, or its key was revoked)."""

    code = "forged_token"


class ExpiredToken(TokenError):
    """Made by us, but past its expiry."""

    code = "expired_token"


@dataclass(frozen=True, slots=True)
class TokenKeys:
    """The signing key id and every key that still verifies."""

    current: str
    keys: Mapping[str, bytes]
    # Older secrets a kid had (the derived k0 of previous gateway secrets): verify only.
    older: Mapping[str, tuple[bytes, ...]] = field(default_factory=dict)

    @classmethod
    def from_env(
        cls, env: Mapping[str, str], secret_key: bytes, previous: Sequence[bytes] = ()
    ) -> TokenKeys:
        """Parse ``GATEWAY_TOKEN_KEYS``; fall back to a key derived from the gateway secret
        (and, verifying only, from each previous secret)."""
        raw = env.get("GATEWAY_TOKEN_KEYS", "").strip()
        if not raw:
            older = tuple(derive_key(old, "tokens") for old in previous)
            return cls(
                DEFAULT_KID, {DEFAULT_KID: derive_key(secret_key, "tokens")}, {DEFAULT_KID: older}
            )
        keys: dict[str, bytes] = {}
        for item in raw.split(","):
            kid, sep, secret = item.strip().partition(":")
            if not sep or not _KID_RE.match(kid):
                raise ConfigError("GATEWAY_TOKEN_KEYS: expected kid:secret[,kid:secret...]")
            if len(secret.encode()) < _MIN_SECRET:
                raise ConfigError(f"GATEWAY_TOKEN_KEYS: key {kid}: at least {_MIN_SECRET} bytes")
            if kid in keys:
                raise ConfigError(f"GATEWAY_TOKEN_KEYS: key {kid} listed twice")
            keys[kid] = secret.encode()
        return cls(next(iter(keys)), keys)


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise MalformedToken("token is not base64url") from exc


class TokenCodec:
    """Issues and verifies tokens for any purpose with one key set."""

    def __init__(self, keys: TokenKeys, *, default_ttl_seconds: int) -> None:
        if keys.current not in keys.keys:
            raise ConfigError("token keys: the current key id has no secret")
        self._keys = keys
        self._ttl = default_ttl_seconds
        self._derived: dict[tuple[str, str], tuple[bytes, bytes]] = {}
        self._older: dict[tuple[str, str], tuple[tuple[bytes, bytes], ...]] = {}

    @property
    def current_kid(self) -> str:
        """The key id new tokens are signed with."""
        return self._keys.current

    def _pair(self, kid: str, purpose: str) -> tuple[bytes, bytes]:
        pair = self._derived.get((kid, purpose))
        if pair is None:
            secret = self._keys.keys[kid]
            pair = (
                derive_key(secret, f"token-mac/{purpose}"),
                derive_key(secret, f"token-enc/{purpose}"),
            )
            self._derived[(kid, purpose)] = pair
        return pair

    def _older_pairs(self, kid: str, purpose: str) -> tuple[tuple[bytes, bytes], ...]:
        pairs = self._older.get((kid, purpose))
        if pairs is None:
            pairs = tuple(
                (derive_key(s, f"token-mac/{purpose}"), derive_key(s, f"token-enc/{purpose}"))
                for s in self._keys.older.get(kid, ())
            )
            self._older[(kid, purpose)] = pairs
        return pairs

    @staticmethod
    def _tag(mac_key: bytes, purpose: str, kid: str, plain: bytes) -> bytes:
        head = b"cgtok1\0" + purpose.encode() + b"\0" + kid.encode() + b"\0"
        # hmac.digest is the one-shot OpenSSL HMAC: several times cheaper than hmac.new,
        # which matters on a link every one-click POST and unsubscribe mail verifies.
        return hmac.digest(mac_key, head + plain, "sha256")[:_TAG_BYTES]

    @staticmethod
    def _xor(enc_key: bytes, tag: bytes, data: bytes) -> bytes:
        stream = bytearray()
        counter = 0
        while len(stream) < len(data):
            block = tag + counter.to_bytes(4, "big")
            stream += hmac.digest(enc_key, block, "sha256")
            counter += 1
        # XOR as two big integers: one C-level operation instead of a loop over bytes.
        size = len(data)
        mixed = int.from_bytes(data, "big") ^ int.from_bytes(bytes(stream[:size]), "big")
        return mixed.to_bytes(size, "big")

    def issue(
        self,
        payload: bytes,
        purpose: str,
        *,
        ttl_seconds: int | None = None,
        now: float | None = None,
    ) -> str:
        """A URL-safe token carrying ``payload`` for ``purpose``, valid for the TTL."""
        ttl = self._ttl if ttl_seconds is None else ttl_seconds
        moment = time.time() if now is None else now
        # Rounded up to the hour so the same link is issued all hour long.
        expires_minute = (int(moment + ttl) // 3600 + 1) * 60
        plain = expires_minute.to_bytes(_EXPIRY_BYTES, "big") + payload
        kid = self._keys.current
        mac_key, enc_key = self._pair(kid, purpose)
        tag = self._tag(mac_key, purpose, kid, plain)
        return f"{kid}.{_b64e(tag + self._xor(enc_key, tag, plain))}"

    def verify(self, token: str, purpose: str, *, now: float | None = None) -> bytes:
        """The payload of a valid token; raise a ``TokenError`` subclass otherwise."""
        if not token or len(token) > _MAX_TOKEN or not token.isascii():
            raise MalformedToken("token missing, too long or not ASCII")
        kid, sep, body = token.partition(".")
        if not sep or not _KID_RE.match(kid) or not re.fullmatch(r"[A-Za-z0-9_\-]+", body):
            raise MalformedToken("token is not <kid>.<base64url>")
        raw = _b64d(body)
        if _b64e(raw) != body:  # only the canonical encoding: one token, one spelling
            raise MalformedToken("token is not canonical base64url")
        if len(raw) < _TAG_BYTES + _EXPIRY_BYTES:
            raise MalformedToken("token too short")
        if kid not in self._keys.keys:
            raise ForgedToken("token signed with an unknown or revoked key")
        tag = raw[:_TAG_BYTES]
        for mac_key, enc_key in (self._pair(kid, purpose), *self._older_pairs(kid, purpose)):
            plain = self._xor(enc_key, tag, raw[_TAG_BYTES:])
            if hmac.compare_digest(tag, self._tag(mac_key, purpose, kid, plain)):
                break
        else:
            raise ForgedToken("token signature does not match")
        expires = int.from_bytes(plain[:_EXPIRY_BYTES], "big") * 60
        if (time.time() if now is None else now) >= expires:
            raise ExpiredToken("token expired")
        return plain[_EXPIRY_BYTES:]

    @staticmethod
    def fingerprint(token: str) -> str:
        """A stable, non-reversible id of one token (for dedupe keys and revocation lists)."""
        return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()[:32]
