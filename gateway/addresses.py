"""Contact addresses (I/O layer): phone numbers to E.164, email addresses to one canonical form."""

from __future__ import annotations

import re

import phonenumbers

from gateway.errors import InvalidAddress
from keywords.model import Channel

E164_RE = re.compile(r"^\+[1-9]\d{6,14}$")
# Deliberately narrow: one @, a dot-atom-ish local part and a dotted domain. Anything odder
# is refused rather than guessed at, since a wrong guess would record consent for someone else.
_EMAIL_RE = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~\-]{1,64}@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)+$"
)
# North American numbers already in E.164 are possible numbers by their shape alone (NANP:
# area code and exchange start with 2-9), so the common case skips a 50 µs parse.
_NANP_RE = re.compile(r"^\+1[2-9]\d{2}[2-9]\d{6}$")
_MAX_EMAIL = 254  # RFC 5321 section 4.5.3.1.3


def normalize_phone(raw: str, default_region: str, *, fast: bool = False) -> str:
    """Return the E.164 form of ``raw`` or raise ``InvalidAddress``.

    With ``fast``, already-E.164 input only has its shape checked: the send gate sees
    hundreds of thousands of numbers per request, and a number we never recorded can only
    be refused there, never allowed. Inbound messages always get the full check.
    """
    if (fast and E164_RE.match(raw)) or _NANP_RE.match(raw):
        return raw
    try:
        number = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidAddress("not a phone number") from exc
    if not phonenumbers.is_possible_number(number):
        raise InvalidAddress("not a possible phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_email(raw: str) -> str:
    """Lower-case the domain (RFC 5321 section 2.4: the local part may be case-sensitive)."""
    address = raw.strip()
    if len(address) > _MAX_EMAIL or not _EMAIL_RE.match(address):
        raise InvalidAddress("not an email address")
    local, _, domain = address.rpartition("@")
    return f"{local}@{domain.lower()}"


def normalize_address(
    channel: Channel, raw: str, default_region: str, *, fast: bool = False
) -> str:
    """Normalize a contact address for ``channel``."""
    if channel is Channel.SMS:
        return normalize_phone(raw.strip(), default_region, fast=fast)
    return normalize_email(raw)
