"""Contact addresses: phone numbers to E.164, email addresses to one key, the rest refused."""

from __future__ import annotations

import email_validator
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gateway.addresses import (
    legacy_email_key,
    normalize_address,
    normalize_email,
    normalize_phone,
    parse_email,
    send_address,
)
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


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+14155٥٥٠١٢٥", "+14155550125"),  # Arabic-Indic digits
        ("+1 ४१५ ५५५ ०१२५", "+14155550125"),  # Devanagari digits
        ("＋１ (４１５) ５５５-０１２５", "+14155550125"),  # full-width forms
        ("+1\u2010415\u2013555\u22120125", "+14155550125"),  # hyphen, en dash, minus sign
    ],
)
def test_digits_of_every_script_become_ascii(raw: str, expected: str) -> None:
    """A number written with non-ASCII digits is the same person as its ASCII spelling."""
    assert expected == normalize_phone(raw, "US")
    assert expected == normalize_address(Channel.SMS, raw, "US", fast=True)


@pytest.mark.parametrize(
    "raw",
    [
        "", "STOP", "12", "+1 555", "+99999999999999999", "☎",
        "+1 (415) CALL-NOW",  # vanity letters: phonenumbers would make digits of them
        "+1 415 555 0123 ext. 5",
        "+14155550123☎",  # symbols phonenumbers would drop
        "+1415555\u200b0123",  # a zero-width space inside
        "+1415555012٣\n4",
    ],
)  # fmt: skip
def test_impossible_numbers_are_refused(raw: str) -> None:
    """What cannot be a phone number, or holds letters or symbols, is refused, never guessed."""
    with pytest.raises(InvalidAddress):
        normalize_phone(raw, "US")


def test_the_gate_fast_path_takes_ascii_e164_only() -> None:
    """The fast path is one ASCII match: a trailing newline or a non-ASCII digit goes the
    long way (and comes out as the ASCII key), never through as a second spelling."""
    assert "+14155550123" == normalize_address(Channel.SMS, "+14155550123\n", "US", fast=True)
    assert "+14155550125" == normalize_address(Channel.SMS, "+1415555012٥", "US", fast=True)


def test_email_key_folds_case_and_send_address_keeps_the_spelling() -> None:
    """The contact key lower-cases local part and domain; mail goes to the spelling given."""
    assert "jane.doe@example.org" == normalize_email(" Jane.Doe@EXAMPLE.org ")
    assert "jane@example.org" == normalize_address(Channel.EMAIL, "jane@Example.ORG", "US")
    assert "Jane@example.org" == send_address(Channel.EMAIL, "Jane@Example.ORG", "US")
    assert "Carol@example.com" == legacy_email_key("Carol@Example.com")


def test_internationalized_domains_are_keyed_in_ascii() -> None:
    """IDNA: the Unicode and the ASCII spelling of one domain are one contact."""
    assert normalize_email("ann@bücher.de") == normalize_email("ANN@xn--bcher-kva.de")
    assert "ann@xn--bcher-kva.de" == parse_email("ann@Bücher.de").send


@pytest.mark.parametrize(
    "raw",
    [
        "jane", "jane@", "@example.org", "a b@example.org", "jane@localhost", "x" * 300,
        "a@-.com", "a..b@example.com", ".a@example.com", "a.@example.com",
        '"a b"@example.org', "a@[192.0.2.1]", "a@example.test", "ü@example.org",
        "a@exa_mple.org", "a@ab--cd.org",
    ],
)  # fmt: skip
def test_malformed_email_addresses_are_refused(raw: str) -> None:
    """Odd addresses are refused rather than recorded (or mailed) for someone else."""
    with pytest.raises(InvalidAddress):
        normalize_email(raw)


_LOCAL = st.text(st.sampled_from("aZ09.-_+!#$%&'*/=?^`{|}~\"@ ü"), min_size=0, max_size=70)


@given(
    _LOCAL,
    st.text(st.sampled_from("aZ09.-_ ü"), max_size=30),
    st.sampled_from(["", ".org", ".COM", ".test", ".x1", ".local", ".xn--p1ai", ".a"]),
)
@example("Carol", "Example", ".com")
@example("a", "xn--bcher-kva", ".de")
@example("x" * 64, "example", ".org")
@example("x" * 65, "example", ".org")
@example(" 0", "0", ".org")
def test_the_plain_address_path_agrees_with_email_validator(
    local: str, domain: str, tld: str
) -> None:
    """parse_email's regular-expression path for plain addresses answers exactly as
    email-validator does, or leaves the address to it."""
    raw = f"{local}@{domain}{tld}"
    try:
        # parse_email ignores surrounding white space by design; email-validator does not.
        valid = email_validator.validate_email(
            raw.strip(), check_deliverability=False, allow_smtputf8=False
        )
    except email_validator.EmailNotValidError:
        expected = None
    else:
        ascii_domain = valid.ascii_domain.lower()
        expected = (f"{valid.local_part.lower()}@{ascii_domain}",
                    f"{valid.local_part}@{ascii_domain}")  # fmt: skip
    try:
        parsed = parse_email(raw)
    except InvalidAddress:
        actual = None
    else:
        actual = (parsed.key, parsed.send)
    assert expected == actual
