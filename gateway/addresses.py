"""Contact addresses (I/O layer): one normalization per kind, used by every edge and the gate.

A person must be one contact whatever way their number or address was written, or an opt-out
lands on a second contact while the first stays opted in (README "Addresses").

- **Phone numbers** (``normalize_phone``): decimal digits of every script are mapped to ASCII
  (``unicodedata.decimal``: ``٥`` is 5), letters are refused (no vanity numbers: phonenumbers
  would turn ``CALL-NOW`` into digits, and a mistyped letter into someone else's number), and
  only the separators people write between digits are allowed; then phonenumbers gives E.164.
- **Email addresses** (``parse_email``): the syntax is checked by email-validator (RFC 5321 /
  5322 dot-atom, no quoted local parts, no IP literals, no special-use domains, no DNS
  look-up). The contact key has the domain in lower-case ASCII (IDNA) and the local part
  lower-cased: we match local parts case-insensitively, as every large mailbox provider
  treats them, although RFC 5321 section 2.4 lets a server tell them apart; two real
  mailboxes that differ only by case are judged less likely than a missed opt-out. The
  spelling as given (domain in ASCII) is kept for sending.

Every pattern here is compiled with ``re.ASCII``: without it ``\\d`` matches every Unicode
digit, and ``+1415555٥٥٠١٢٥`` passed for E.164.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import email_validator
import phonenumbers

from gateway.errors import InvalidAddress
from keywords.model import Channel

# \Z, not $: "$" also matches before a trailing newline.
E164_RE = re.compile(r"\+[1-9][0-9]{6,14}\Z", re.ASCII)
# E164_RE for each line of a batch joined with line feeds ("*+": nothing to backtrack).
_E164_LINES_RE = re.compile(r"(?:\+[1-9][0-9]{6,14}\n)*+\Z", re.ASCII)
# North American numbers already in E.164 are possible numbers by their shape alone (NANP:
# area code and exchange start with 2-9), so the common case skips a 10-50 µs parse.
_NANP_RE = re.compile(r"\+1[2-9][0-9]{2}[2-9][0-9]{6}\Z", re.ASCII)
# What may stand between the digits of a written number, after NFKC (full-width forms),
# besides white space and the dashes (Unicode category Pd); U+2212 is the minus sign.
_PHONE_SEPARATORS = frozenset(" .-/()+\u2212")

# The common email address, checked without email-validator's 20 µs: a dot-atom local part
# (RFC 5322 section 3.2.3) and LDH labels (RFC 1035 section 2.3.1, no "--" so no IDNA
# A-labels) under a letters-only top-level domain. Whatever this accepts, email-validator
# accepts with the same result (tests/gateway/test_gateway_addresses.py holds them equal);
# everything else goes to email-validator.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PLAIN_EMAIL_RE = re.compile(
    rf"({_ATEXT}+(?:\.{_ATEXT}+)*)@((?:{_LABEL}\.)+[A-Za-z]{{2,63}})\Z", re.ASCII
)
_MAX_LOCAL = 64  # RFC 5321 section 4.5.3.1.1
_MAX_EMAIL = 254  # RFC 5321 section 4.5.3.1.3 (a path of 256 octets with its brackets)
_MAX_DOMAIN = 253
_SPECIAL_USE = frozenset(email_validator.SPECIAL_USE_DOMAIN_NAMES)


def _ascii_digits(raw: str) -> str:
    """``raw`` with every decimal digit in ASCII; ``InvalidAddress`` for letters or symbols."""
    if raw.isascii():
        if any(c.isalpha() for c in raw):
            raise InvalidAddress("letters are not allowed in a phone number")
        chars = raw
    else:
        out = []
        for c in raw:
            value = unicodedata.decimal(c, None)
            if value is not None:
                out.append(chr(0x30 + value))
            elif unicodedata.category(c).startswith("L"):
                raise InvalidAddress("letters are not allowed in a phone number")
            else:
                out.append(unicodedata.normalize("NFKC", c))
        chars = "".join(out)
    for c in chars:
        allowed = "0" <= c <= "9" or c in _PHONE_SEPARATORS or c.isspace()
        if not allowed and unicodedata.category(c) != "Pd":  # Pd: hyphen, en dash, ...
            raise InvalidAddress("not a phone number")
    return chars


def all_e164(raws: Sequence[str]) -> bool:
    """True when every one of ``raws`` matches ``E164_RE``, from one pass of the regular
    expression over the whole batch.

    The send gate's batches are E.164 as a rule, and one match per number cost about 2,300
    CPU instructions of the 6,900 a warm batch spent per recipient (a match object and a
    malloc each); over the joined batch it is about 700 (callgrind, 2026-12-02). A line
    feed inside a number would split it into lines that may each look valid, so the line
    feeds are counted: exactly one per number.
    """
    if len(raws) == 1:  # a single check: one match costs less than the join
        raw = raws[0]
        return isinstance(raw, str) and E164_RE.match(raw) is not None
    if not raws:
        return False
    try:
        joined = "\n".join(raws) + "\n"
    except TypeError:  # not all strings: the caller's own checks refuse them
        return False
    return _E164_LINES_RE.match(joined) is not None and joined.count("\n") == len(raws)


def normalize_phone(raw: str, default_region: str, *, fast: bool = False) -> str:
    """Return the E.164 form of ``raw`` or raise ``InvalidAddress``.

    With ``fast``, already-E.164 input only has its shape checked: the send gate sees
    hundreds of thousands of numbers per request, and a number we never recorded can only
    be refused there, never allowed. Inbound messages always get the full check.
    """
    if (fast and E164_RE.match(raw)) or _NANP_RE.match(raw):
        return raw
    text = _ascii_digits(raw.strip())
    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidAddress("not a phone number") from exc
    if not phonenumbers.is_possible_number(number):
        raise InvalidAddress("not a possible phone number")
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if not E164_RE.match(e164):
        raise InvalidAddress("not a phone number")
    return e164


@dataclass(frozen=True, slots=True)
class EmailAddress:
    """A validated email address: the contact key, and the spelling to send to."""

    key: str  # local part and domain lower-cased, domain in ASCII (IDNA): the contact row
    send: str  # as given, domain lower-cased in ASCII: what mail is addressed to


def parse_email(raw: str) -> EmailAddress:
    """Validate ``raw`` (surrounding white space ignored); ``InvalidAddress`` if it is not
    an address we can mail."""
    text = raw.strip()
    plain = _PLAIN_EMAIL_RE.match(text)
    if plain is not None:
        local, domain = plain.group(1), plain.group(2).lower()
        if (
            len(text) <= _MAX_EMAIL
            and len(local) <= _MAX_LOCAL
            and len(domain) <= _MAX_DOMAIN
            and "--" not in domain  # "xn--" labels are IDNA: email-validator checks them
            and domain.rpartition(".")[2] not in _SPECIAL_USE
        ):
            return EmailAddress(f"{local.lower()}@{domain}", f"{local}@{domain}")
    try:
        valid = email_validator.validate_email(
            text,
            check_deliverability=False,  # no DNS on the request path; bounces tell us
            allow_smtputf8=False,  # an internationalized local part needs SMTPUTF8 relays
            allow_quoted_local=False,
            allow_domain_literal=False,
        )
    except email_validator.EmailNotValidError as exc:
        raise InvalidAddress("not an email address") from exc
    local, domain = valid.local_part, valid.ascii_domain.lower()
    return EmailAddress(f"{local.lower()}@{domain}", f"{local}@{domain}")


def normalize_email(raw: str) -> str:
    """The contact key of an email address (see ``parse_email``)."""
    return parse_email(raw).key


def legacy_email_key(raw: str) -> str:
    """How addresses were keyed before migration 011: only the domain lower-cased.

    Suppression hashes made then cannot be recomputed (they are hashes), so an erased
    address is also looked up in this form; it matches only the spelling that was erased.
    """
    local, _, domain = raw.strip().rpartition("@")
    return f"{local}@{domain.lower()}"


def normalize_address(
    channel: Channel, raw: str, default_region: str, *, fast: bool = False
) -> str:
    """The contact key for ``channel``: E.164, or the email key."""
    if channel is Channel.SMS:
        return normalize_phone(raw.strip(), default_region, fast=fast)
    return parse_email(raw).key


def send_address(channel: Channel, raw: str, default_region: str) -> str:
    """What to put on the wire for ``raw``: E.164, or the validated address as spelled."""
    return key_and_send_address(channel, raw, default_region)[1]


def key_and_send_address(channel: Channel, raw: str, default_region: str) -> tuple[str, str]:
    """The contact key and the address to send to, from one validation."""
    if channel is Channel.SMS:
        number = normalize_phone(raw.strip(), default_region)
        return number, number
    parsed = parse_email(raw)
    return parsed.key, parsed.send
