"""Text on the wire: data_coding, UDH, and splitting replies without breaking characters."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.edges.smpp.text import (
    Concat,
    UndecodableText,
    decode_text,
    encode_reply,
    split_udh,
)

GSM_CHARS = (
    "@£$¥èéùìòÇ\nØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCXYZÄÖÑÜ§¿axyzäöñüà"
    "^{}\\[~]|€"
)


@pytest.mark.parametrize(("data", "coding", "text"), [
    (b"STOP", 0, "STOP"),
    (bytes([0x5F, 0x60, 0x00, 0x1B, 0x65]), 0, "§¿@€"),   # smpplib is wrong at 0x5F
    (b"STOP", 1, "STOP"),
    ("ARRÊT".encode("latin-1"), 3, "ARRÊT"),
    ("STOP 😀".encode("utf-16-be"), 8, "STOP 😀"),       # a surrogate pair
    (b"STOP", 0xF1, "STOP"),                              # GSM 03.38 coding group, class 1
])  # fmt: skip
def test_decode_codings(data: bytes, coding: int, text: str) -> None:
    """data_coding 0, 1, 3, 8 and 0xF0-0xF3 decode to the text the subscriber wrote."""
    assert text == decode_text(data, coding)


@pytest.mark.parametrize("coding", [0x02, 0x04, 0xF4])
def test_binary_codings_are_not_text(coding: int) -> None:
    """Binary data_coding raises UndecodableText (answered with a permanent error)."""
    with pytest.raises(UndecodableText):
        decode_text(b"\x01\x02", coding)


def test_udh_8_and_16_bit_references() -> None:
    """IEI 0x00 and 0x08 give the reference, total and part; other IEs are skipped."""
    assert (Concat(7, 3, 2), b"AB") == split_udh(bytes([5, 0, 3, 7, 3, 2]) + b"AB")
    ports = bytes([4, 0x05, 2, 0x0B, 0x84])  # an application port element first
    assert (Concat(0x1234, 2, 1), b"C") == split_udh(
        bytes([10]) + ports[1:] + bytes([0x08, 4, 0x12, 0x34, 2, 1]) + b"C"
    )


@pytest.mark.parametrize("message", [b"", bytes([9, 0, 3]), bytes([5, 0, 3, 7, 3, 4])])
def test_broken_udh_is_refused(message: bytes) -> None:
    """An empty, overlong or out-of-range UDH raises UndecodableText."""
    with pytest.raises(UndecodableText):
        split_udh(message)


def _reassemble(coding: int, parts: list[bytes]) -> str:
    if len(parts) == 1:
        return decode_text(parts[0], coding)
    bodies = []
    for n, part in enumerate(parts, start=1):
        concat, body = split_udh(part)
        assert concat is not None
        assert (n, len(parts)) == (concat.seq, concat.total)
        # Each part must decode on its own: no escape or surrogate pair is cut in two.
        decode_text(body, coding)
        if coding == 8:
            assert not 0xD800 <= int.from_bytes(body[-2:], "big") <= 0xDBFF
        else:
            assert body[-1:] != b"\x1b"
        bodies.append(body)
    return decode_text(b"".join(bodies), coding)


def test_single_part_capacities() -> None:
    """160 GSM-7 characters or 70 UCS-2 units are one SMS; one more splits."""
    assert (0, 1) == (encode_reply("a" * 160, 1)[0], len(encode_reply("a" * 160, 1)[1]))
    assert 2 == len(encode_reply("a" * 161, 1)[1])
    assert (8, 1) == (encode_reply("ó" * 70, 1)[0], len(encode_reply("ó" * 70, 1)[1]))
    assert 2 == len(encode_reply("ó" * 71, 1)[1])


def test_escape_pair_at_a_part_boundary_moves_whole() -> None:
    """'€' at septet 153 goes to the second part instead of being split after its ESC."""
    text = "a" * 152 + "€" + "b" * 20
    coding, parts = encode_reply(text, 9)
    assert 152 == len(parts[0]) - 6
    assert text == _reassemble(coding, parts)


def test_surrogate_pair_at_a_part_boundary_moves_whole() -> None:
    """An emoji at UTF-16 unit 67 goes to the next part."""
    text = "ó" * 66 + "😀" + "x" * 10
    coding, parts = encode_reply(text, 9)
    assert (8, 132) == (coding, len(parts[0]) - 6)
    assert text == _reassemble(coding, parts)


@given(st.text(alphabet=GSM_CHARS, max_size=800))
def test_gsm_replies_round_trip(text: str) -> None:
    """Any GSM-7 text splits into parts that decode back to it, each part within 160."""
    coding, parts = encode_reply(text, 1)
    assert 0 == coding
    assert all(len(p) <= 160 for p in parts)
    assert text == _reassemble(coding, parts)


@given(st.text(min_size=1, max_size=400).filter(lambda t: "\x00" not in t))
def test_any_text_round_trips(text: str) -> None:
    """Any Unicode text (emoji included) splits into ≤140-octet parts and decodes back."""
    coding, parts = encode_reply(text, 1)
    assert all(len(p) <= 160 if coding == 0 else len(p) <= 140 for p in parts)
    assert text == _reassemble(coding, parts)
