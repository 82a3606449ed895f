"""Tests for keywords.normalize: folding for matching, idempotence, robustness."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keywords.normalize import normalize, words


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("STOP", "stop"),
        ("  Stop!!  ", "stop"),
        ("ＳＴＯＰ", "stop"),  # full-width (NFKC)
        ("ARRÊT", "arret"),  # accents fold
        ("Arrêt.", "arret"),
        ("A\u0301LTO", "alto"),  # combining accent
        ("don’t text me", "dont text me"),  # smart apostrophe dropped inside a word
        ("“STOP”", "stop"),  # smart quotes
        ("OPT-OUT", "opt out"),  # hyphen separates
        ("OPT–OUT", "opt out"),  # en dash
        ("OPT OUT", "opt out"),
        ("OPTOUT", "optout"),
        ("Stop 🙏", "stop"),  # emoji ignored
        ("stop\t\n  all", "stop all"),
        ("STOP_ALL", "stop all"),
        ("Straße", "strasse"),  # case fold, not lower
        ("...", ""),
        ("", ""),
        ("\x00stop\x07", "stop"),
        ("\ud800stop", "stop"),  # lone surrogate
    ],
)
def test_normalize_table(text: str, expected: str) -> None:
    """Case, width, accents, quotes, dashes, emoji and spacing fold away."""
    assert expected == normalize(text)


def test_words_splits_normalized_text() -> None:
    """words() gives the normalized words, none for punctuation-only text."""
    assert ["stop", "all", "please"] == words("  STOP-all, please!! ")
    assert [] == words(" ?! ")


def test_long_text_does_not_raise() -> None:
    """A 10k-character text normalizes without error."""
    assert 10_000 == len(normalize("x" * 10_000))


@given(st.text())
def test_normalize_is_idempotent(text: str) -> None:
    """normalize(normalize(x)) == normalize(x) for any string."""
    once = normalize(text)
    assert once == normalize(once)


@given(st.text())
def test_normalize_output_shape(text: str) -> None:
    """Output is single-spaced words of letters/digits, with no surrounding space."""
    out = normalize(text)
    assert out == out.strip()
    assert "  " not in out
    assert all(c.isalnum() or c == " " for c in out)


@given(st.text(alphabet=st.characters(exclude_categories=())))
def test_normalize_never_raises_with_surrogates(text: str) -> None:
    """Any str, surrogates and control characters included, normalizes."""
    assert isinstance(normalize(text), str)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("S\u200bTOP", "stop"),  # zero-width space
        ("ST\u200cO\u200dP", "stop"),  # zero-width non-joiner and joiner
        ("STO\u2060P", "stop"),  # word joiner
        ("S\ufeffTOP", "stop"),  # byte-order mark, also called zero-width no-break space
        ("UN\u00adSUB\u00adSCRIBE", "unsubscribe"),  # soft hyphens
        ("S\u202eTOP\u202c", "stop"),  # bidi override and pop
        ("S\u2066TO\u2069P", "stop"),  # bidi isolate
        ("S\u061cTOP", "stop"),  # Arabic letter mark
        ("ST\U000e0041OP", "stop"),  # tag character
        ("S\u3164TOP", "stop"),  # Hangul filler, a Lo letter drawn as nothing
        ("S\uffa0T\u115fO\u1160P", "stop"),
    ],
)
def test_invisible_characters_are_dropped(text: str, expected: str) -> None:
    """Format characters (Cf) and Hangul fillers vanish instead of splitting a word."""
    assert expected == normalize(text)


INVISIBLE = st.one_of(st.characters(categories=["Cf"]), st.sampled_from("\u115f\u1160\u3164\uffa0"))


@given(st.text(st.characters(exclude_categories=())), st.data())
def test_inserted_format_characters_change_nothing(text: str, data: st.DataObject) -> None:
    """A text with invisible characters inserted anywhere normalizes as the text itself."""
    spots = data.draw(st.lists(st.tuples(st.integers(0, len(text)), INVISIBLE), max_size=4))
    disguised = text
    for at, invisible in sorted(spots, reverse=True):
        disguised = disguised[:at] + invisible + disguised[at:]
    assert normalize(text) == normalize(disguised)
