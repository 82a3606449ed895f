"""Mail authentication of broken mail: a result, never an exception.

dkimpy parses the headers and signatures of whatever a client sends. An exception out of
``MailAuthenticator.check`` would reach the SMTP handler as a failure of ours, answered 451,
and the mail would come back for ever with its opt-out never recorded; a header dkimpy
cannot parse is a signature that does not verify (``permerror``), or none at all. These
checks ask no DNS: the mails carry no From domain to look up, and no IP to check SPF for.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.edges.smtp.mailauth import MailAuthenticator, OwnKey, Signature
from gateway.edges.smtp.resolver import MailResolver

# A first header line that starts with a space: dkimpy's parser raises IndexError on it.
FOLDED_FIRST = b" folded\r\nSubject: stop\r\n\r\nstop\r\n"


@pytest.fixture
def authenticator() -> Iterator[MailAuthenticator]:
    """An authenticator whose DNS server does not exist (no check here asks it)."""
    auth = MailAuthenticator(MailResolver(("127.0.0.1",), port=9, timeout=0.2), timeout=2.0)
    yield auth
    auth.close()


def _signed(signature: bytes) -> bytes:
    return b"DKIM-Signature: " + signature + b"\r\nSubject: stop\r\n\r\nstop\r\n"


@pytest.mark.parametrize(
    "signature",
    [b"no tags at all", b"v=1; v=1", b"=1; a=rsa-sha256"],
    ids=["no_equals", "duplicate_tag", "empty_name"],
)
def test_a_signature_whose_tags_do_not_parse_is_a_permerror(
    authenticator: MailAuthenticator, signature: bytes
) -> None:
    """Tags dkimpy refuses (RFC 6376 section 3.2): one signature, ``permerror``, no domain."""
    results = authenticator.check(_signed(signature), "", "", "")
    assert (Signature("", "", "permerror"),) == results.dkim
    assert ("none", "none") == (results.spf, results.dmarc)


def test_headers_dkimpy_cannot_parse_give_no_signature_and_a_dmarc_permerror(
    authenticator: MailAuthenticator,
) -> None:
    """A mail whose first line is a continuation: no signatures, DMARC ``permerror``."""
    results = authenticator.check(FOLDED_FIRST, "", "", "")
    assert ((), "permerror") == (results.dkim, results.dmarc)


@pytest.fixture(scope="module")
def own_key() -> OwnKey:
    """Our DKIM key, as ``[email] dkim_domain`` and GATEWAY_DKIM_PRIVATE_KEY give it."""
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return OwnKey.from_private_pem(pem, "acme-health.example", "sel1")


def test_our_own_key_sees_no_signature_in_headers_dkimpy_cannot_parse(own_key: OwnKey) -> None:
    """``signed_by_us`` is False for a mail dkimpy's header parser refuses."""
    assert not own_key.signed_by_us(FOLDED_FIRST)


def test_our_own_key_sees_no_signature_in_a_signature_that_does_not_parse(
    own_key: OwnKey,
) -> None:
    """``signed_by_us`` is False for a signature whose tags do not parse."""
    broken = b"From: <a@example.org>\r\nTo: <b@example.org>\r\n" + _signed(b"v=1; v=1")
    assert not own_key.signed_by_us(broken)
