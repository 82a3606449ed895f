"""Contact addresses: phone numbers to E.164, email addresses to one form, the rest refused."""

from __future__ import annotations

import pytest

from gateway.addresses import normalize_address, normalize_email, normalize_phone
from gateway.errors import InvalidAddress
from keywords.model import Channel


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+14155550123", "+14155550123"),
        ("+1 415 555 0123", "+14155550123"),
        ("(415) 555-0123", "+14155550123"),
        ("415.555.0123", "+14155550123"),
        ("+44 20 7946 0958", "+442079460958"),
        ("+33 6 12 34 56 78", "+33612345678"),
    ],
)
def test_numbers_are_written_in_e164(raw: str, expected: str) -> None:
    """Every way of writing a number becomes the one E.164 form the ledger keys on."""
    assert expected == normalize_phone(raw, "US")


@pytest.mark.parametrize("raw", ["", "STOP", "12", "+1 555", "+99999999999999999", "☎"])
def test_impossible_numbers_are_refused(raw: str) -> None:
    """What cannot be a phone number is refused, never guessed."""
    with pytest.raises(InvalidAddress):
        normalize_phone(raw, "US")


def test_email_domain_is_lowercased_and_local_part_kept() -> None:
    """RFC 5321 section 2.4: only the domain is case-insensitive."""
    assert "Jane.Doe@example.org" == normalize_email(" Jane.Doe@EXAMPLE.org ")
    assert "jane@example.org" == normalize_address(Channel.EMAIL, "jane@Example.ORG", "US")


@pytest.mark.parametrize(
    "raw", ["jane", "jane@", "@example.org", "a b@example.org", "jane@localhost", "x" * 300]
)
def test_malformed_email_addresses_are_refused(raw: str) -> None:
    """Odd addresses are refused rather than recorded for someone else."""
    with pytest.raises(InvalidAddress):
        normalize_email(raw)
