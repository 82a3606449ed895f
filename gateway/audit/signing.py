"""The key that signs ledger checkpoints (pure layer): Ed25519, derived from a secret.

Ed25519 (RFC 8032) rather than an HMAC: anyone holding the public key can check a receipt
(a person, their lawyer, a regulator) without being able to forge one. The private key is
never stored: its 32-byte seed is derived for this one purpose from
``GATEWAY_RECEIPT_SIGNING_KEY`` when set, else from ``GATEWAY_SECRET_KEY``
(gateway/security/signing.py ``derive_key``). A dedicated key lets the gateway secret rotate
without changing the key receipts are checked with (docs/receipts.md, "Keys").
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.errors import ConfigError
from gateway.security.signing import derive_key

RECEIPT_PURPOSE = "ledger-checkpoint-signing"
ENV_KEY = "GATEWAY_RECEIPT_SIGNING_KEY"
_MIN_SECRET_BYTES = 32


def key_id(public_key: bytes) -> str:
    """A short name for a public key: the first 8 bytes of its SHA-256, in hex."""
    return hashlib.sha256(public_key).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class CheckpointSigner:
    """Signs checkpoint statements; holds the derived private key."""

    _private: Ed25519PrivateKey

    @classmethod
    def from_secret(cls, secret: bytes) -> CheckpointSigner:
        """The key derived from ``secret`` for this purpose only."""
        seed = derive_key(secret, RECEIPT_PURPOSE)
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def from_env(cls, env: Mapping[str, str], gateway_secret: bytes) -> CheckpointSigner:
        """``GATEWAY_RECEIPT_SIGNING_KEY`` when set (at least 32 bytes), else the gateway
        secret."""
        own = env.get(ENV_KEY, "")
        if own:
            if len(own.encode()) < _MIN_SECRET_BYTES:
                raise ConfigError(f"{ENV_KEY}: at least {_MIN_SECRET_BYTES} bytes required")
            return cls.from_secret(own.encode())
        return cls.from_secret(gateway_secret)

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte public key (RFC 8032 section 5.1.5)."""
        return self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def key_id(self) -> str:
        """The public key's short name, recorded with each checkpoint."""
        return key_id(self.public_key)

    def sign(self, statement: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``statement``."""
        return self._private.sign(statement)
