"""The codec wrapper: smpplib's defects stay behind gateway/edges/smpp/codec.py."""

from __future__ import annotations

import struct

import pytest

from gateway.edges.smpp import codec
from gateway.edges.smpp.codec import MalformedPdu


def _cstr(value: str) -> bytes:
    return value.encode() + b"\x00"


def deliver_sm(
    message: bytes, *, tlvs: bytes = b"", sequence: int = 7, sm_length: int | None = None
) -> bytes:
    """A deliver_sm built by hand from SMPP 3.4 §4.6.1, not by the codec under test."""
    body = (
        _cstr("") + bytes([1, 1]) + _cstr("14155550123") + bytes([0, 0]) + _cstr("12345")
        + bytes([0, 0, 0]) + _cstr("") + _cstr("") + bytes([0, 0, 0, 0])
        + bytes([len(message) if sm_length is None else sm_length]) + message + tlvs
    )  # fmt: skip
    return struct.pack(">LLLL", 16 + len(body), codec.DELIVER_SM, 0, sequence) + body


def test_sequence_given_is_the_sequence_sent() -> None:
    """smpplib ignores sequence= in its constructors; encode() puts ours in the header."""
    frame = codec.encode("enquire_link", 4242)
    assert (16, codec.ENQUIRE_LINK, 0, 4242) == codec.header(frame)


def test_parsed_strings_are_text() -> None:
    """Addresses come back as str (smpplib leaves bytes), the body as bytes."""
    pdu = codec.decode(deliver_sm(b"STOP"))
    assert ("14155550123", "12345", b"STOP") == (
        pdu.cstr("source_addr"), pdu.cstr("destination_addr"), pdu.octets("short_message"),
    )  # fmt: skip
    assert 7 == pdu.sequence


def test_long_short_message_is_refused_not_a_struct_error() -> None:
    """Encoding a short_message over 254 octets raises ValueError, not struct.error."""
    with pytest.raises(ValueError, match="254"):
        codec.encode("submit_sm", 1, short_message=b"x" * 300)


def test_message_payload_over_255_octets_decodes() -> None:
    """A 300-octet message_payload TLV (0x0424) is read whole."""
    payload = b"S" * 300
    pdu = codec.decode(deliver_sm(b"", tlvs=struct.pack(">HH", 0x0424, 300) + payload))
    assert payload == pdu.tlvs[codec.TAG_MESSAGE_PAYLOAD]


def test_tlvs_smpplib_lacks_are_kept() -> None:
    """ussd_service_op (0x0501) and a vendor tag decode instead of raising KeyError."""
    tlvs = struct.pack(">HHB", 0x0501, 1, 0x12) + struct.pack(">HH2s", 0x1401, 2, b"ab")
    pdu = codec.decode(deliver_sm(b"HELP", tlvs=tlvs))
    assert {0x0501: b"\x12", 0x1401: b"ab"} == dict(pdu.tlvs)


@pytest.mark.parametrize(("name", "command_id"), [
    ("outbind", 0x0B), ("cancel_sm", 0x08), ("replace_sm", 0x07), ("made-up", 0x1234),
])  # fmt: skip
def test_commands_smpplib_cannot_build_decode_as_unknown(name: str, command_id: int) -> None:
    """outbind, cancel_sm, replace_sm decode as unknown, for a generic_nack, not an exception."""
    frame = struct.pack(">LLLL", 20, command_id, 0, 9) + b"\x00\x00\x00\x00"
    pdu = codec.decode(frame)
    assert (False, 9) == (pdu.known, pdu.sequence), name


@pytest.mark.parametrize("frame", [
    deliver_sm(b"STOP", sm_length=40),                       # sm_length past the end
    deliver_sm(b"STOP", tlvs=b"\x04\x24\x00\x10abc"),         # TLV runs past the PDU
    deliver_sm(b"STOP", tlvs=b"\x04"),                        # truncated TLV header
    deliver_sm(b"STOP")[:-2],                                 # command_length too large
    b"\x00\x00\x00\x08\x00\x00\x00\x05",                      # shorter than a header
])  # fmt: skip
def test_malformed_lengths_are_refused(frame: bytes) -> None:
    """Lengths smpplib accepts silently raise MalformedPdu."""
    with pytest.raises(MalformedPdu):
        codec.decode(frame)


def test_error_response_has_no_body() -> None:
    """An error deliver_sm_resp is a bare header (SMPP 3.4 §3.3)."""
    frame = codec.encode("deliver_sm_resp", 5, status=codec.ESME_RX_T_APPN)
    assert (16, 0x80000005, 0x64, 5) == codec.header(frame)


def test_extra_tlvs_are_appended_with_the_length_fixed() -> None:
    """TLVs passed raw are appended and command_length covers them."""
    frame = codec.encode("submit_sm", 3, short_message=b"hi", destination_addr="1415",
                         tlvs={0x020C: b"\x00\x07"})  # fmt: skip
    assert len(frame) == codec.header(frame)[0]
    assert {0x020C: b"\x00\x07"} == dict(codec.decode(frame).tlvs)


def test_fast_deliver_sm_resp_matches_smpplib() -> None:
    """The hand-packed deliver_sm_resp equals smpplib's encoding, for success and error."""
    for status in (codec.ESME_ROK, codec.ESME_RX_T_APPN):
        expected = codec.encode("deliver_sm_resp", 77, status=status)
        assert expected == codec.deliver_sm_resp(77, status)


def test_fast_submit_sm_resp_reading_matches_smpplib() -> None:
    """submit_sm_resp read on the fast path gives the message_id smpplib would."""
    frame = codec.encode("submit_sm_resp", 12, message_id="0a1b2c")
    pdu = codec.decode(frame)
    assert ("0a1b2c", 12, True) == (pdu.cstr("message_id"), pdu.sequence, pdu.is_response)
    error = codec.decode(codec.encode("submit_sm_resp", 13, status=codec.ESME_RTHROTTLED))
    assert (codec.ESME_RTHROTTLED, "") == (error.status, error.cstr("message_id"))
