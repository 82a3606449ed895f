"""SMS segment counting (pure layer): how many parts a reply costs, per GSM 03.38 and UCS-2.

A text that every character of is in the GSM 03.38 default alphabet (or its extension table)
is sent as GSM-7: 160 septets fit one SMS, and a concatenated message carries 153 per part
(the 6-octet UDH takes 7 septets). Extension characters (``^{}\\[~]|€`` and form feed) are an
ESC + character pair: two septets, and a pair must not be split across parts (GSM 03.38 §6.2.1.1).

Anything else is sent as UCS-2 (UTF-16BE on the wire, SMPP data_coding 8): 70 code units in one
SMS, 67 per concatenated part. Characters outside the BMP (emoji) are a surrogate pair, two
code units, and a pair is likewise never split.
"""

from __future__ import annotations

__all__ = [
    "GSM7_PART",
    "GSM7_SINGLE",
    "UCS2_PART",
    "UCS2_SINGLE",
    "gsm7_septets",
    "is_gsm7",
    "segments",
    "ucs2_units",
]

GSM7_SINGLE = 160
GSM7_PART = 153
UCS2_SINGLE = 70
UCS2_PART = 67

# GSM 03.38 default alphabet in code-point order 0x00-0x7F; 0x1B (ESC) is left out because it
# only introduces an extension character and is never text by itself.
_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ" + "ÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# GSM 03.38 extension table: each costs ESC + one septet.
_EXTENSION = frozenset("\f^{}\\[~]|€")


def is_gsm7(text: str) -> bool:
    """True if ``text`` can be sent in the GSM 03.38 7-bit alphabet (basic or extension)."""
    return all(c in _BASIC or c in _EXTENSION for c in text)


def gsm7_septets(text: str) -> int:
    """Septets ``text`` takes in GSM-7; extension characters count 2.

    Raises ``ValueError`` if a character is not in GSM 03.38 (check ``is_gsm7`` first).
    """
    total = 0
    for c in text:
        if c in _BASIC:
            total += 1
        elif c in _EXTENSION:
            total += 2
        else:
            raise ValueError(f"U+{ord(c):04X} is not in the GSM 03.38 alphabet")
    return total


def ucs2_units(text: str) -> int:
    """UTF-16 code units of ``text``: a character outside the BMP (an emoji) counts 2."""
    return len(text) + sum(1 for c in text if ord(c) > 0xFFFF)


def _pack(costs: list[int], capacity: int) -> int:
    """Parts needed when items of the given costs fill parts in order, never split."""
    parts, used = 1, 0
    for cost in costs:
        if used + cost > capacity:
            parts += 1
            used = 0
        used += cost
    return parts


def segments(text: str) -> int:
    """Number of SMS parts ``text`` is sent as (an empty text is still one SMS)."""
    if is_gsm7(text):
        septets = gsm7_septets(text)
        if septets <= GSM7_SINGLE:
            return 1
        return _pack([2 if c in _EXTENSION else 1 for c in text], GSM7_PART)
    units = ucs2_units(text)
    if units <= UCS2_SINGLE:
        return 1
    return _pack([2 if ord(c) > 0xFFFF else 1 for c in text], UCS2_PART)
