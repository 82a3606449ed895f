"""The codec's fast path against smpplib, the reference: same octets out, same fields in.

gateway/edges/smpp/codec.py reads and writes the PDUs of the hot path (deliver_sm, submit_sm,
their responses, enquire_link, unbind) with ``struct`` and hands every other shape to
smpplib. These properties build frames by hand from SMPP 3.4 §4 (not with the code under
test), well formed and broken in every way Hypothesis finds, and require ``decode`` and
``reference_decode`` (and ``encode`` and ``reference_encode``) to agree on every field, or to
refuse alike.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.edges.smpp import codec
from gateway.edges.smpp.codec import MalformedPdu, Pdu

EXAMPLES = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Tags the edge reads (SMPP 3.4 §5.3.2), tags smpplib lacks, and a vendor tag.
TLV_TAGS = [
    codec.TAG_MESSAGE_PAYLOAD, codec.TAG_SAR_MSG_REF_NUM, codec.TAG_SAR_TOTAL_SEGMENTS,
    codec.TAG_SAR_SEGMENT_SEQNUM, codec.TAG_RECEIPTED_MESSAGE_ID, codec.TAG_MESSAGE_STATE,
    codec.TAG_NETWORK_ERROR_CODE, 0x0501, 0x1401,
]  # fmt: skip


def _outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    """What a codec call gives: its value, or the kind of refusal (for comparing two)."""
    try:
        value = call()
    except MalformedPdu as exc:
        return "malformed", (exc.sequence, exc.status)
    except Exception as exc:  # noqa: BLE001 - the reference's own errors (struct.error, ...)
        return "raises", type(exc).__name__
    return "value", value


def _fields(pdu: Pdu) -> tuple[Any, ...]:
    """Every field of a decoded PDU, with each parameter's type (b"1" is not 1)."""
    params = {k: (type(v).__name__, v) for k, v in pdu.params.items()}
    return pdu.command_id, pdu.status, pdu.sequence, params, dict(pdu.tlvs), pdu.known


def _assert_same_decode(frame: bytes) -> None:
    fast, reference = (
        _outcome(lambda: codec.decode(frame)),
        _outcome(lambda: codec.reference_decode(frame)),
    )
    if fast[0] == reference[0] == "value":
        assert _fields(reference[1]) == _fields(fast[1])
    else:
        assert reference == fast


def _cstr(max_chars: int) -> st.SearchStrategy[bytes]:
    """A C-octet string value without its NUL: mostly within its limit, sometimes past it."""
    return st.binary(max_size=max_chars + 3).map(lambda b: b.replace(b"\x00", b"1"))


@st.composite
def tlv_area(draw: st.DrawFn) -> bytes:
    """Well-framed TLVs (SMPP 3.4 §3.2.4.1), with values the edge reads and others."""
    area = b""
    for _ in range(draw(st.integers(0, 4))):
        tag = draw(st.sampled_from(TLV_TAGS) | st.integers(0, 0xFFFF))
        if tag == codec.TAG_RECEIPTED_MESSAGE_ID:
            value = draw(st.text("0123456789abcdef", max_size=20)).encode() + b"\x00"
        elif tag in (codec.TAG_SAR_TOTAL_SEGMENTS, codec.TAG_SAR_SEGMENT_SEQNUM,
                     codec.TAG_MESSAGE_STATE):  # fmt: skip
            value = bytes([draw(st.integers(0, 255))])
        elif tag == codec.TAG_SAR_MSG_REF_NUM:
            value = struct.pack(">H", draw(st.integers(0, 0xFFFF)))
        else:
            value = draw(st.binary(max_size=300))
        area += struct.pack(">HH", tag, len(value)) + value
    return area


@st.composite
def deliver_sm_frame(draw: st.DrawFn) -> bytes:
    """A deliver_sm as SMPP 3.4 §4.6.1 lays it out, then perhaps cut or damaged."""
    u8 = st.integers(0, 255)
    message = draw(st.binary(max_size=254))
    udh = draw(st.sampled_from([b"", b"\x05\x00\x03\x2a\x02\x01", b"\x06\x08\x04\x01\x02\x02\x02"]))
    if len(udh) + len(message) <= 254:
        message = udh + message
    sm_length = draw(st.just(len(message)) | u8)
    body = (
        draw(_cstr(5)) + b"\x00" + bytes([draw(u8), draw(u8)]) + draw(_cstr(20)) + b"\x00"
        + bytes([draw(u8), draw(u8)]) + draw(_cstr(20)) + b"\x00"
        + bytes([draw(u8), draw(u8), draw(u8)]) + draw(_cstr(16)) + b"\x00"
        + draw(_cstr(16)) + b"\x00" + bytes([draw(u8) for _ in range(4)])
        + bytes([sm_length]) + message + draw(tlv_area() | st.binary(max_size=12))
    )  # fmt: skip
    damage = draw(st.sampled_from(["none", "none", "cut", "flip"]))
    if damage == "cut":
        body = body[: draw(st.integers(0, len(body)))]
    elif damage == "flip" and body:
        at = draw(st.integers(0, len(body) - 1))
        body = body[:at] + bytes([draw(u8)]) + body[at + 1 :]
    status, sequence = draw(st.integers(0, 0xFF)), draw(st.integers(0, 0x7FFFFFFF))
    return struct.pack(">LLLL", 16 + len(body), codec.DELIVER_SM, status, sequence) + body


@given(deliver_sm_frame())
@EXAMPLES
def test_deliver_sm_decodes_as_smpplib_reads_it(frame: bytes) -> None:
    """deliver_sm: every mandatory parameter and TLV equal to smpplib's, or the same refusal."""
    _assert_same_decode(frame)


RESPONSE_IDS = [
    codec.SUBMIT_SM | codec.RESPONSE_BIT, codec.DELIVER_SM | codec.RESPONSE_BIT,
    codec.ENQUIRE_LINK, codec.ENQUIRE_LINK | codec.RESPONSE_BIT, codec.UNBIND,
    codec.UNBIND | codec.RESPONSE_BIT, codec.GENERIC_NACK,
]  # fmt: skip


@given(
    st.sampled_from(RESPONSE_IDS),
    st.integers(0, 0x100),
    st.integers(0, 0x7FFFFFFF),
    st.one_of(
        st.just(b""),
        st.text("0123456789abcdefXYZ", max_size=70).map(lambda t: t.encode() + b"\x00"),
        st.binary(max_size=80),
        tlv_area(),
    ),
)
@EXAMPLES
def test_responses_and_bare_commands_decode_as_smpplib_reads_them(
    command_id: int, status: int, sequence: int, body: bytes
) -> None:
    """submit_sm_resp, deliver_sm_resp, enquire_link(_resp), unbind(_resp), generic_nack."""
    _assert_same_decode(struct.pack(">LLLL", 16 + len(body), command_id, status, sequence) + body)


def _text(max_chars: int) -> st.SearchStrategy[str]:
    """A string parameter: Latin-1 text and others, often at its limit or just past it."""
    anything = st.characters(max_codepoint=0x2FF, exclude_categories=["Cs"])
    return st.text(anything, max_size=max_chars + 4) | st.text(
        "0123456789", min_size=max(0, max_chars - 1), max_size=max_chars + 2
    )


@st.composite
def submit_sm_params(draw: st.DrawFn) -> dict[str, Any]:
    """submit_sm keyword arguments as SmppSender passes them, and shapes it never passes."""
    params: dict[str, Any] = {}
    for name, limit in (
        ("service_type", 5), ("source_addr_ton", 0), ("source_addr_npi", 0), ("source_addr", 20),
        ("dest_addr_ton", 0), ("dest_addr_npi", 0), ("destination_addr", 20), ("esm_class", 0),
        ("protocol_id", 0), ("priority_flag", 0), ("schedule_delivery_time", 16),
        ("validity_period", 16), ("registered_delivery", 0), ("replace_if_present_flag", 0),
        ("data_coding", 0), ("sm_default_msg_id", 0),
    ):  # fmt: skip
        if not draw(st.booleans()):
            continue
        if limit:
            params[name] = draw(st.none() | _text(limit))
        else:
            params[name] = draw(st.none() | st.integers(0, 255) | st.integers(-2, 300))
    if draw(st.booleans()):
        params["short_message"] = draw(st.binary(max_size=256) | st.none())
    if draw(st.integers(0, 9)) == 0:  # an optional parameter by name: smpplib's to write
        params["sar_msg_ref_num"] = draw(st.integers(0, 0xFFFF))
    return params


@given(
    submit_sm_params(),
    st.integers(0, 0x7FFFFFFF),
    st.sampled_from([codec.ESME_ROK, codec.ESME_RSYSERR]),
    st.none() | st.dictionaries(st.sampled_from(TLV_TAGS), st.binary(max_size=20), max_size=3),
)
@EXAMPLES
def test_submit_sm_encodes_as_smpplib_writes_it(
    params: dict[str, Any], sequence: int, status: int, tlvs: dict[int, bytes] | None
) -> None:
    """submit_sm: byte for byte smpplib's encoding, raw TLVs appended, or the same error."""
    fast = _outcome(lambda: codec.encode("submit_sm", sequence, status=status, tlvs=tlvs, **params))
    reference = _outcome(
        lambda: codec.reference_encode("submit_sm", sequence, status=status, tlvs=tlvs, **params)
    )
    assert reference == fast


@given(
    st.sampled_from(["submit_sm_resp", "deliver_sm_resp"]),
    st.integers(0, 0x7FFFFFFF),
    st.sampled_from([codec.ESME_ROK, codec.ESME_RX_T_APPN, codec.ESME_RTHROTTLED]),
    st.none() | _text(66),
)
@EXAMPLES
def test_id_responses_encode_as_smpplib_writes_them(
    name: str, sequence: int, status: int, message_id: str | None
) -> None:
    """submit_sm_resp / deliver_sm_resp: message_id cut at 64 as smpplib cuts it; errors bare."""
    params: dict[str, Any] = {} if message_id is None else {"message_id": message_id}
    fast = _outcome(lambda: codec.encode(name, sequence, status=status, **params))
    reference = _outcome(lambda: codec.reference_encode(name, sequence, status=status, **params))
    assert reference == fast


@pytest.mark.parametrize(
    "name", ["enquire_link", "enquire_link_resp", "unbind", "unbind_resp", "generic_nack"]
)
@given(sequence=st.integers(0, 0x7FFFFFFF), status=st.integers(0, 0x100))
@settings(max_examples=50, deadline=None)
def test_bare_commands_encode_as_smpplib_writes_them(name: str, sequence: int, status: int) -> None:
    """The header-only PDUs: the same 16 octets."""
    fast = codec.encode(name, sequence, status=status)
    assert codec.reference_encode(name, sequence, status=status) == fast


def _stop(source: str = "14155550123", tlvs: bytes = b"") -> bytes:
    body = (
        b"\x00\x01\x01" + source.encode() + b"\x00\x00\x00" + b"12345\x00"
        + b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x04STOP" + tlvs
    )  # fmt: skip
    return struct.pack(">LLLL", 16 + len(body), codec.DELIVER_SM, 0, 3) + body


def test_the_hot_shapes_never_reach_smpplib(monkeypatch: pytest.MonkeyPatch) -> None:
    """A STOP, a SAR part, a receipt, the responses: all on the fast path (its speed is the
    point; bench/run_codec.py measures it)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("smpplib reached")

    monkeypatch.setattr(codec, "_reference_decode", refuse)
    monkeypatch.setattr(codec, "reference_encode", refuse)
    sar = struct.pack(">HHHHHBHHB", 0x020C, 2, 7, 0x020E, 1, 2, 0x020F, 1, 1)
    receipt = struct.pack(">HH", 0x001E, 3) + b"1a\x00" + struct.pack(">HHB", 0x0427, 1, 2)
    for frame in (_stop(), _stop(tlvs=sar), _stop(tlvs=receipt)):
        assert b"STOP" == codec.decode(frame).octets("short_message")
    for command_id, body in ((0x80000004, b"0a1b\x00"), (0x80000005, b"\x00"), (0x15, b"")):
        codec.decode(struct.pack(">LLLL", 16 + len(body), command_id, 0, 1) + body)
    codec.encode(
        "submit_sm", 9, source_addr_ton=0, source_addr_npi=1, source_addr="12345",
        dest_addr_ton=1, dest_addr_npi=1, destination_addr="14155550123", esm_class=0x40,
        data_coding=8, registered_delivery=1, short_message=b"\x05\x00\x03\x01\x02\x01hi",
    )  # fmt: skip
    for name in ("enquire_link", "enquire_link_resp", "unbind_resp"):
        codec.encode(name, 4)
    codec.encode("submit_sm_resp", 4, message_id="abc")
