"""Cleaning text for PostgreSQL: total, idempotent, and what it leaves is always storable."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.storable import all_storable, clean, storable

# Every code point, lone surrogates and NUL included (what JSON and surrogateescape can give).
ANY_TEXT = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=60)


@given(ANY_TEXT)
def test_cleaned_text_is_storable_and_cleaning_again_changes_nothing(text: str) -> None:
    """clean() never raises, its result is storable, and a second pass is a no-op."""
    cleaned, changed = clean(text)
    assert storable(cleaned)
    assert (cleaned, 0) == clean(cleaned)
    assert (changed == 0) == (cleaned == text)


def test_nul_and_surrogates_are_counted_and_other_text_kept() -> None:
    """NUL is removed, a lone surrogate becomes U+FFFD, emoji and accents stay."""
    assert ("Stop", 1) == clean("Stop\x00")
    assert ("STOP\ufffd🙏é", 1) == clean("STOP\ud800🙏é")
    assert not all_storable({"a": ["x", {"b": "y\x00"}]})
    assert all_storable({"a": ["x", {"b": "y"}], "n": 1})
