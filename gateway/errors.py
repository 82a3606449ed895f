"""Gateway errors (I/O layer): one root, each error carrying whether the peer should retry.

Edges map these to the wire and nowhere else: a ``TemporaryFailure`` becomes SMPP
ESME_RX_T_APPN, SMTP 451 or HTTP 503 (the peer retries, nothing is lost); a ``BadInput``
becomes a 4xx / 5xx permanent refusal and writes nothing (docs/DESIGN.md, invariants 1 and 7).
"""

from __future__ import annotations


class GatewayError(Exception):
    """Root of every error the gateway raises on purpose."""

    temporary: bool = False
    code: str = "gateway_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class ConfigError(GatewayError):
    """The configuration or environment is invalid; raised at start-up, never at run time."""

    code = "config_error"


class BadInput(GatewayError):
    """The peer sent something we refuse for good: retrying the same input cannot succeed."""

    code = "bad_input"


class UnknownSender(BadInput):
    """The destination is not a sender (short code, long code, list) in our configuration."""

    code = "unknown_sender"


class InvalidAddress(BadInput):
    """A phone number or email address that cannot be normalized."""

    code = "invalid_address"


class Suppressed(BadInput):
    """Consent captured by someone other than the person for an erased (suppressed) address."""

    code = "suppressed"


class TemporaryFailure(GatewayError):
    """Nothing was committed; the peer must retry (docs/DESIGN.md, invariant 1)."""

    temporary = True
    code = "temporarily_unavailable"
