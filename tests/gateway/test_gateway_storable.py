"""``clean_mapping``'s one-pass check of storable mappings answers as cleaning each key and
value would (gateway/storable.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.storable import clean, clean_mapping

# Text with the characters that matter drawn often: NUL, lone surrogates of both halves
# (which must not pair up when strings are joined), and ordinary ASCII and non-ASCII.
TEXT = st.text(
    alphabet=st.sampled_from(["a", "Z", "é", "\x00", "\ud800", "\udc00", "\ufffd", "\U0001f600"]),
    max_size=6,
)


def reference(values: dict[str, str]) -> tuple[dict[str, str], dict[str, int]]:
    out: dict[str, str] = {}
    changed: dict[str, int] = {}
    for key, value in values.items():
        name, in_key = clean(key)
        text, in_value = clean(value)
        out[name] = text
        if in_key or in_value:
            changed[name] = in_key + in_value
    return out, changed


@given(st.dictionaries(TEXT, TEXT, max_size=5))
def test_the_fast_path_answers_as_each_item_would(values: dict[str, str]) -> None:
    assert reference(values) == clean_mapping(values)


def test_a_high_and_a_low_surrogate_in_two_values_are_both_replaced() -> None:
    """Joined, "\\ud800" and "\\udc00" stay two lone surrogates: both are cleaned."""
    out, changed = clean_mapping({"a": "x\ud800", "b": "\udc00y"})
    assert ({"a": "x\ufffd", "b": "\ufffdy"}, {"a": 1, "b": 1}) == (out, changed)
