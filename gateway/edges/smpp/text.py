"""SMS text on the wire (I/O layer, SMPP edge): data_coding, UDH, and splitting replies.

Inbound: SMPP 3.4 §5.2.19 data_coding 0 (SMSC default alphabet: GSM 03.38 in practice, one
septet per octet), 1 (IA5/ASCII), 3 (Latin-1), 8 (UCS-2, read as UTF-16BE so emoji sent as
surrogate pairs decode), and the GSM 03.38 data coding group 0xF0-0xF3 (default alphabet with
a message class). Binary codings (2, 4, ...) cannot carry a keyword: they are refused.

Outbound: GSM 03.38 when every character fits, UCS-2 otherwise (``keywords.segments`` decides
the same way). A long reply is split with a concatenation UDH (3GPP TS 23.040 §9.2.3.24.1):
153 septets or 67 UTF-16 units per part, never splitting an escape pair (GSM 03.38 §6.2.1.1)
or a surrogate pair. The GSM codec is the ``gsm0338`` package (correct at 0x5F/0x60, where
smpplib's encoder is not).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

import gsm0338  # noqa: F401 - registers the "gsm03.38" codec

from keywords.segments import GSM7_PART, GSM7_SINGLE, UCS2_PART, UCS2_SINGLE, is_gsm7

CODING_DEFAULT = 0x00
CODING_IA5 = 0x01
CODING_LATIN1 = 0x03
CODING_UCS2 = 0x08

_GSM = "gsm03.38"


class UndecodableText(ValueError):
    """A short message we cannot read as text (binary data_coding, broken UDH)."""


@dataclass(frozen=True, slots=True)
class Concat:
    """One part of a concatenated message: reference, total parts, this part (from 1)."""

    ref: int
    total: int
    seq: int


def decode_text(data: bytes, data_coding: int, *, default_alphabet: str = "gsm0338") -> str:
    """Text of a short message body (UDH already removed)."""
    if data_coding == CODING_DEFAULT or (0xF0 <= data_coding <= 0xF3 and not data_coding & 0x04):
        if default_alphabet == "latin1":
            return data.decode("latin-1")
        if default_alphabet == "ascii":
            return data.decode("ascii", errors="replace")
        # Unpacked GSM 03.38 (one septet per octet, as SMPP carries it); the high bit is not
        # part of a septet, so mask it rather than fail on a sloppy SMSC.
        return bytes(b & 0x7F for b in data).decode(_GSM, errors="replace")
    if data_coding == CODING_IA5:
        return data.decode("ascii", errors="replace")
    if data_coding == CODING_LATIN1:
        return data.decode("latin-1")
    if data_coding == CODING_UCS2:
        if len(data) % 2:
            raise UndecodableText("UCS-2 text with an odd number of octets")
        return data.decode("utf-16-be", errors="replace")
    raise UndecodableText(f"data_coding 0x{data_coding:02X} is not text")


def split_udh(message: bytes) -> tuple[Concat | None, bytes]:
    """Split a short message that has the UDH indicator into (concatenation, body).

    UDH: length octet, then information elements (IEI, IEDL, data). IEI 0x00 is an 8-bit
    reference (ref, total, seq), 0x08 a 16-bit one (ref hi, ref lo, total, seq); other
    elements (ports, national language shifts) are skipped.
    """
    if not message:
        raise UndecodableText("UDH indicator set on an empty message")
    udhl = message[0]
    if udhl + 1 > len(message):
        raise UndecodableText("UDH longer than the message")
    udh, body = message[1 : udhl + 1], message[udhl + 1 :]
    concat: Concat | None = None
    pos = 0
    while pos < len(udh):
        if pos + 2 > len(udh):
            raise UndecodableText("truncated UDH element")
        iei, iedl = udh[pos], udh[pos + 1]
        data = udh[pos + 2 : pos + 2 + iedl]
        if len(data) != iedl:
            raise UndecodableText("truncated UDH element")
        if iei == 0x00 and iedl == 3:
            concat = Concat(data[0], data[1], data[2])
        elif iei == 0x08 and iedl == 4:
            concat = Concat((data[0] << 8) | data[1], data[2], data[3])
        pos += 2 + iedl
    if concat is not None and not (1 <= concat.seq <= concat.total):
        raise UndecodableText("concatenation part number out of range")
    return concat, body


def _gsm_units(text: str) -> Iterator[bytes]:
    for char in text:
        yield char.encode(_GSM)  # one octet, or ESC + octet for the extension table


def _ucs2_units(text: str) -> Iterator[bytes]:
    for char in text:
        yield char.encode("utf-16-be")  # two octets, or four for a surrogate pair


def _pack(units: Iterator[bytes], capacity: int, unit_size: int) -> list[bytes]:
    """Fill parts of ``capacity`` septets/code units without splitting a unit."""
    parts: list[bytes] = []
    current = bytearray()
    used = 0
    for unit in units:
        cost = len(unit) // unit_size
        if used + cost > capacity:
            parts.append(bytes(current))
            current, used = bytearray(), 0
        current += unit
        used += cost
    parts.append(bytes(current))
    return parts


def encode_reply(text: str, ref: int) -> tuple[int, list[bytes]]:
    """(data_coding, short messages) for a reply; several parts carry a UDH with ``ref``."""
    coding, bodies = _split(text)
    if len(bodies) == 1:
        return coding, list(bodies)
    total = len(bodies)
    udh = [bytes([5, 0x00, 3, ref & 0xFF, total, n]) for n in range(1, total + 1)]
    return coding, [u + b for u, b in zip(udh, bodies, strict=True)]


@functools.lru_cache(maxsize=4096)
def _split(text: str) -> tuple[int, tuple[bytes, ...]]:
    """Coding and part bodies; cached because replies are rendered from a few templates."""
    if is_gsm7(text):
        encoded = text.encode(_GSM)
        if len(encoded) <= GSM7_SINGLE:
            return CODING_DEFAULT, (encoded,)
        coding, bodies = CODING_DEFAULT, _pack(_gsm_units(text), GSM7_PART, 1)
    else:
        encoded = text.encode("utf-16-be")
        if len(encoded) <= 2 * UCS2_SINGLE:
            return CODING_UCS2, (encoded,)
        coding, bodies = CODING_UCS2, _pack(_ucs2_units(text), UCS2_PART, 2)
    if len(bodies) > 255:
        raise ValueError("reply too long for a concatenated SMS")
    return coding, tuple(bodies)
