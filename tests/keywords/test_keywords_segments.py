"""Tests for keywords.segments: GSM 03.38 septets and SMS part counts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keywords.segments import gsm7_septets, is_gsm7, segments, ucs2_units

GSM_SAMPLE = "@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./09:;<=>?¡AZÄÖÑÜ§¿azäöñüà\n\r"
EXTENSION = "^{}\\[~]|€\f"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", 0), ("STOP", 4), ("€", 2), ("[x]", 5), ("\f", 2), ("a^b", 4)],
)
def test_septets(text: str, expected: int) -> None:
    """Basic characters count 1 septet, extension characters 2."""
    assert expected == gsm7_septets(text)


def test_non_gsm_character_is_refused() -> None:
    """gsm7_septets raises ValueError for a character outside GSM 03.38."""
    assert not is_gsm7("ç")
    with pytest.raises(ValueError, match="U\\+00E7"):
        gsm7_septets("ç")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 1),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("€" * 80, 1),  # 160 septets
        ("€" * 81, 2),
        ("a" * 152 + "€" + "a" * 10, 2),  # the pair would straddle: moves whole to part 2
        ("a" * 152 + "€" + "a" * 152, 3),
        ("á" * 70, 1),
        ("á" * 71, 2),
        ("á" * 134, 2),
        ("á" * 135, 3),
        ("🙏" * 35, 1),  # 70 UTF-16 units
        ("🙏" * 36, 2),
        ("a" * 66 + "🙏" + "a" * 5, 2),  # surrogate pair not split
        ("a" * 66 + "🙏" + "a" * 66, 3),
    ],
)
def test_segments_table(text: str, expected: int) -> None:
    """GSM-7 160/153 and UCS-2 70/67, never splitting an escape or surrogate pair."""
    assert expected == segments(text)


def brute_segments(text: str) -> int:
    """Cut parts greedily by trying each prefix against the encoded size (no cost table)."""
    if is_gsm7(text):
        single, per_part = 160, 153
        size = gsm7_septets
    else:
        single, per_part = 70, 67
        size = ucs2_units
    if size(text) <= single:
        return 1
    parts, rest = 0, text
    while rest:
        cut = max(n for n in range(1, len(rest) + 1) if size(rest[:n]) <= per_part)
        parts, rest = parts + 1, rest[cut:]
    return parts


@given(st.text(alphabet=GSM_SAMPLE + EXTENSION, max_size=500))
def test_gsm_segments_agree_with_brute_force(text: str) -> None:
    """GSM-7 counts match a brute-force split."""
    assert brute_segments(text) == segments(text)


@given(st.text(alphabet=GSM_SAMPLE + EXTENSION + "áçê🙏😀中", max_size=300))
def test_any_segments_agree_with_brute_force(text: str) -> None:
    """Mixed texts (UCS-2 when any character is outside GSM) match a brute-force split."""
    assert brute_segments(text) == segments(text)


@given(st.text(max_size=200))
def test_ucs2_units_match_utf16(text: str) -> None:
    """ucs2_units is the UTF-16 code unit count."""
    assert len(text.encode("utf-16-le")) // 2 == ucs2_units(text)
