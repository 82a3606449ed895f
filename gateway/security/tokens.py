"""Signed, opaque tokens (I/O layer helper, no I/O): unsubscribe, preference, confirm links.

A token is ``<kid>.<base64url(version || SIV || ciphertext)>`` (format 2):

- ``kid`` names the key that made it. Keys come from ``GATEWAY_TOKEN_KEYS`` as
  ``kid:secret,kid:secret`` (the first signs, every listed one verifies, so a rotation keeps
  old links working; removing a kid revokes every token it made). Without that variable one
  key ``k0`` is derived from ``GATEWAY_SECRET_KEY``; keys ``k0`` derived from each of
  ``GATEWAY_PREVIOUS_SECRET_KEYS`` still verify, so rotating the secret keeps issued links.
- ``version`` is one byte, ``2``.
- ``SIV || ciphertext`` is AES-SIV (RFC 5297, ``cryptography``'s ``AESSIV`` with a 512-bit
  key: AES-256) over the expiry (3 bytes, unix hours) and the payload, with the version, the
  kid and the purpose as associated data. AES-SIV is a deterministic AEAD: the same payload
  and expiry hour give the same token, so the same link is issued all hour and repeated
  header requests stay cacheable; it needs no nonce, and its 128-bit SIV authenticates the
  whole (RFC 5297 section 1.3.2: no confidentiality is lost beyond whether two plain texts
  are equal). The link names the recipient, yet nobody can read the address out of a URL
  (RFC 8058 section 3.1; CAN-SPAM and GDPR keep addresses out of logs and referrers).
- The key is HKDF-SHA256 (RFC 5869) of the kid's secret, with the purpose and the version in
  ``info``: a token made for one purpose (``unsubscribe``) never opens for another
  (``preferences``).

A token is 20 bytes longer than its payload before base64url: 4 more than format 1 (a 96-bit
HMAC tag and 4 bytes of expiry), which ``gateway/security/legacy_tokens.py`` still verifies
until the last of those links expires. A body that starts with the version byte is tried as format 2
first; any other, or one that does not open, as format 1 (whose first byte is a random tag
byte, so 1 in 256 of them starts with ``2`` too).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.errors import BadInput, ConfigError
from gateway.security.legacy_tokens import MIN_BYTES as LEGACY_MIN_BYTES
from gateway.security.legacy_tokens import LegacyKeys, open_legacy
from gateway.security.signing import derive_key

VERSION = 2
_VERSION_BYTE = bytes([VERSION])
_SIV_BYTES = 16
_EXPIRY_BYTES = 3  # unix hours: good until the year 3884
_MIN_BYTES = 1 + _SIV_BYTES + _EXPIRY_BYTES
_AD_LABEL = b"consent-gateway/token"
_KID_RE = re.compile(r"^[A-Za-z0-9]{1,8}$")
_BODY_RE = re.compile(r"[A-Za-z0-9_\-]+")
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


def _siv_key(secret: bytes, purpose: str) -> bytes:
    """The AES-SIV key of one secret for one purpose (HKDF-SHA256, RFC 5869)."""
    info = b"consent-gateway/token/v%d/" % VERSION + purpose.encode()
    return HKDF(algorithm=hashes.SHA256(), length=64, salt=None, info=info).derive(secret)


@dataclass(frozen=True, slots=True)
class _Opener:
    """Everything that opens tokens of one kid and purpose: the kid's current secret first."""

    sivs: tuple[AESSIV, ...]
    legacy: tuple[LegacyKeys, ...]


class TokenCodec:
    """Issues and verifies tokens for any purpose with one key set."""

    def __init__(self, keys: TokenKeys, *, default_ttl_seconds: int | None = None) -> None:
        if keys.current not in keys.keys:
            raise ConfigError("token keys: the current key id has no secret")
        self._keys = keys
        self._ttl = default_ttl_seconds
        self._openers: dict[tuple[str, str], _Opener] = {}

    @property
    def current_kid(self) -> str:
        """The key id new tokens are signed with."""
        return self._keys.current

    def _opener(self, kid: str, purpose: str) -> _Opener:
        opener = self._openers.get((kid, purpose))
        if opener is None:
            secrets = (self._keys.keys[kid], *self._keys.older.get(kid, ()))
            opener = _Opener(
                tuple(AESSIV(_siv_key(s, purpose)) for s in secrets),
                tuple(LegacyKeys(s, purpose) for s in secrets),
            )
            self._openers[(kid, purpose)] = opener
        return opener

    @staticmethod
    def _associated(kid: str, purpose: str) -> list[bytes]:
        return [_AD_LABEL, _VERSION_BYTE, kid.encode(), purpose.encode()]

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
        if ttl is None:
            # One codec serves every purpose (gateway/app/gateway.py): each use names its TTL.
            raise ValueError("issue: ttl_seconds is required without a default TTL")
        moment = time.time() if now is None else now
        # Rounded up to the hour so the same link is issued all hour long.
        expires_hour = int(moment + ttl) // 3600 + 1
        plain = expires_hour.to_bytes(_EXPIRY_BYTES, "big") + payload
        kid = self._keys.current
        sealed = self._opener(kid, purpose).sivs[0].encrypt(plain, self._associated(kid, purpose))
        return f"{kid}.{_b64e(_VERSION_BYTE + sealed)}"

    def verify(self, token: str, purpose: str, *, now: float | None = None) -> bytes:
        """The payload of a valid token; raise a ``TokenError`` subclass otherwise."""
        if not token or len(token) > _MAX_TOKEN or not token.isascii():
            raise MalformedToken("token missing, too long or not ASCII")
        kid, sep, body = token.partition(".")
        if not sep or not _KID_RE.match(kid) or not _BODY_RE.fullmatch(body):
            raise MalformedToken("token is not <kid>.<base64url>")
        raw = _b64d(body)
        if _b64e(raw) != body:  # only the canonical encoding: one token, one spelling
            raise MalformedToken("token is not canonical base64url")
        if len(raw) < min(_MIN_BYTES, LEGACY_MIN_BYTES):
            raise MalformedToken("token too short")
        if kid not in self._keys.keys:
            raise ForgedToken("token signed with an unknown or revoked key")
        opener = self._opener(kid, purpose)
        opened = self._open(raw, kid, purpose, opener)
        if opened is None:
            opened = open_legacy(raw, kid, purpose, opener.legacy)
        if opened is None:
            raise ForgedToken("token signature does not match")
        expires, payload = opened
        if (time.time() if now is None else now) >= expires:
            raise ExpiredToken("token expired")
        return payload

    def _open(
        self, raw: bytes, kid: str, purpose: str, opener: _Opener
    ) -> tuple[int, bytes] | None:
        """``(expires at, payload)`` of a format-2 token, or None."""
        if raw[:1] != _VERSION_BYTE or len(raw) < _MIN_BYTES:
            return None
        associated = self._associated(kid, purpose)
        for siv in opener.sivs:
            try:
                plain = siv.decrypt(raw[1:], associated)
            except InvalidTag:
                continue
            return int.from_bytes(plain[:_EXPIRY_BYTES], "big") * 3600, plain[_EXPIRY_BYTES:]
        return None

    @staticmethod
    def fingerprint(token: str) -> str:
        """A stable, non-reversible id of one token (for dedupe keys and revocation lists)."""
        return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()[:32]
