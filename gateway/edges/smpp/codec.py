"""SMPP 3.4 PDU codec (I/O layer, SMPP edge): smpplib's PDU classes used as a codec only.

Every smpplib defect the edge must not see is handled here and nowhere else:

- ``sequence=`` passed to a constructor is ignored: the sequence is assigned afterwards, and
  a dummy client stands in for smpplib's (blocking) client counter;
- parsed C-octet strings are ``bytes``: ``Pdu.cstr`` decodes them (SMPP 3.4 §3.1: ASCII);
- a ``short_message`` over 254 octets makes smpplib raise ``struct.error``: we never encode
  one (replies are split into ≤140-octet parts) and refuse one on decode;
- several TLVs the spec defines for deliver_sm (e.g. ussd_service_op 0x0501) are missing
  from smpplib's classes and raise: we parse the whole TLV area ourselves (SMPP 3.4 §3.2.4.1
  tag/length/value) into ``Pdu.tlvs``, keeping unknown and vendor tags raw;
- malformed lengths are accepted silently by smpplib: ``decode`` checks command_length,
  sm_length and the TLV framing, and raises ``MalformedPdu`` instead;
- outbind, cancel_sm, replace_sm (and other requests smpplib cannot build) raise
  ``UnknownCommandError``: ``decode`` returns them as a body-less ``Pdu`` so the session can
  answer generic_nack (SMPP 3.4 §4.3).

smpplib builds a Python object with some sixty attributes per PDU, which capped the edge at
roughly 29,000 deliver_sm decoded and 25,000 submit_sm encoded per second on one core
(bench/run_codec.py). The PDUs the gateway exchanges under load (deliver_sm in, submit_sm
out, their responses, enquire_link) therefore go through a ``struct``-level fast path that
gives exactly what smpplib gives: the same octets on encode, the same fields on decode. Any
PDU outside the shapes it knows (another command, an optional parameter passed by name, a
string without its NUL, a body cut short) goes to smpplib, which stays the reference
(``reference_decode`` / ``reference_encode``); tests/edges/smpp/test_smpp_codec_fast.py checks
the two agree with Hypothesis.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from smpplib import command_codes, exceptions, smpp

HEADER = struct.Struct(">LLLL")
MIN_LENGTH = 16
MAX_LENGTH = 64 * 1024  # no 3.4 PDU comes near this; a larger length means a broken stream

# command_id values (SMPP 3.4 §5.1.2.1)
GENERIC_NACK = 0x80000000
BIND_RECEIVER = 0x00000001
BIND_TRANSMITTER = 0x00000002
SUBMIT_SM = 0x00000004
DELIVER_SM = 0x00000005
UNBIND = 0x00000006
BIND_TRANSCEIVER = 0x00000009
OUTBIND = 0x0000000B
ENQUIRE_LINK = 0x00000015
ALERT_NOTIFICATION = 0x00000102
RESPONSE_BIT = 0x80000000

# command_status values (SMPP 3.4 §5.1.3)
ESME_ROK = 0x00
ESME_RINVMSGLEN = 0x01
ESME_RINVCMDLEN = 0x02
ESME_RINVCMDID = 0x03
ESME_RSYSERR = 0x08
ESME_RINVSRCADR = 0x0A
ESME_RINVDSTADR = 0x0B
ESME_RBINDFAIL = 0x0D
ESME_RMSGQFUL = 0x14
ESME_RTHROTTLED = 0x58
ESME_RX_T_APPN = 0x64
ESME_RX_P_APPN = 0x65

# TLV tags (SMPP 3.4 §5.3.2)
TAG_RECEIPTED_MESSAGE_ID = 0x001E
TAG_SAR_MSG_REF_NUM = 0x020C
TAG_SAR_TOTAL_SEGMENTS = 0x020E
TAG_SAR_SEGMENT_SEQNUM = 0x020F
TAG_NETWORK_ERROR_CODE = 0x0423
TAG_MESSAGE_PAYLOAD = 0x0424
TAG_MESSAGE_STATE = 0x0427

# The fast path's shapes (see the module docstring): responses whose body is message_id only
# (SMPP 3.4 §4.4.2, §4.6.2), and commands that are a header alone (§4.2, §4.3, §4.11).
_ID_RESPONSES = frozenset({SUBMIT_SM | RESPONSE_BIT, DELIVER_SM | RESPONSE_BIT})
_BARE_COMMANDS = frozenset(
    {ENQUIRE_LINK, ENQUIRE_LINK | RESPONSE_BIT, UNBIND, UNBIND | RESPONSE_BIT, GENERIC_NACK}
)
_FAST_RESPONSES = {
    "submit_sm_resp": SUBMIT_SM | RESPONSE_BIT,
    "deliver_sm_resp": DELIVER_SM | RESPONSE_BIT,
}
_FAST_BARE = {
    "enquire_link": ENQUIRE_LINK, "enquire_link_resp": ENQUIRE_LINK | RESPONSE_BIT,
    "unbind": UNBIND, "unbind_resp": UNBIND | RESPONSE_BIT, "generic_nack": GENERIC_NACK,
}  # fmt: skip
# submit_sm's mandatory parameters in wire order (SMPP 3.4 §4.4.1) up to sm_length: a
# C-octet string with smpplib's limit (NUL included; a longer value is cut to limit - 1, as
# smpplib cuts it), or 0 for a one-octet integer.
_SUBMIT_LAYOUT = (
    ("service_type", 6), ("source_addr_ton", 0), ("source_addr_npi", 0), ("source_addr", 21),
    ("dest_addr_ton", 0), ("dest_addr_npi", 0), ("destination_addr", 21), ("esm_class", 0),
    ("protocol_id", 0), ("priority_flag", 0), ("schedule_delivery_time", 17),
    ("validity_period", 17), ("registered_delivery", 0), ("replace_if_present_flag", 0),
    ("data_coding", 0), ("sm_default_msg_id", 0),
)  # fmt: skip
_SUBMIT_KEYS = frozenset(name for name, _ in _SUBMIT_LAYOUT) | {"short_message"}
_NUL = b"\x00"
_MAX_CSTR = {  # longest value (NUL excluded) of the C-octet strings we read, SMPP 3.4 §4
    "service_type": 5, "source_addr": 20, "destination_addr": 20, "system_id": 15,
    "schedule_delivery_time": 16, "validity_period": 16, "message_id": 64, "password": 8,
    "system_type": 12, "address_range": 40,
}  # fmt: skip


class MalformedPdu(Exception):
    """The bytes are not a valid PDU; ``sequence`` is the header's, for the generic_nack."""

    def __init__(self, message: str, *, sequence: int = 0, status: int = ESME_RINVCMDLEN) -> None:
        super().__init__(message)
        self.sequence = sequence
        self.status = status


@dataclass(frozen=True, slots=True)
class Pdu:
    """One decoded PDU: the header, the mandatory parameters and the raw TLVs."""

    command_id: int
    status: int
    sequence: int
    params: Mapping[str, Any] = field(default_factory=dict)
    tlvs: Mapping[int, bytes] = field(default_factory=dict)
    known: bool = True  # False: a command we answer with generic_nack

    @property
    def is_response(self) -> bool:
        """True for *_resp and generic_nack (the high bit of command_id, SMPP 3.4 §3.2)."""
        return bool(self.command_id & RESPONSE_BIT)

    def cstr(self, name: str) -> str:
        """A C-octet string parameter as text (ASCII per SMPP 3.4 §3.1; Latin-1 is lenient)."""
        value = self.params.get(name)
        if isinstance(value, bytes):
            return value.decode("latin-1")
        return "" if value is None else str(value)

    def integer(self, name: str) -> int:
        """An integer parameter, 0 when absent."""
        value = self.params.get(name)
        return value if isinstance(value, int) else 0

    def octets(self, name: str) -> bytes:
        """An octet-string parameter (short_message), empty when absent."""
        value = self.params.get(name)
        return value if isinstance(value, bytes) else b""

    def tlv_int(self, tag: int) -> int | None:
        """A TLV read as a big-endian unsigned integer, or None when absent."""
        raw = self.tlvs.get(tag)
        return None if raw is None or not raw else int.from_bytes(raw, "big")

    def tlv_cstr(self, tag: int) -> str | None:
        """A C-octet-string TLV as text, without its NUL."""
        raw = self.tlvs.get(tag)
        return None if raw is None else raw.split(b"\x00", 1)[0].decode("latin-1")


class _NoClient:
    """Stands in for smpplib's client: its constructors ask it for a sequence number."""

    sequence = 0

    def next_sequence(self) -> int:
        return 0


_CLIENT = _NoClient()


def _parse_tlvs(area: bytes, sequence: int) -> dict[int, bytes]:
    tlvs: dict[int, bytes] = {}
    pos = 0
    while pos < len(area):
        if pos + 4 > len(area):
            raise MalformedPdu("truncated TLV header", sequence=sequence)
        tag, length = struct.unpack_from(">HH", area, pos)
        pos += 4
        if pos + length > len(area):
            raise MalformedPdu(f"TLV 0x{tag:04X} runs past the PDU", sequence=sequence)
        tlvs[tag] = area[pos : pos + length]
        pos += length
    return tlvs


# ---- the fast path (module docstring): None means "not a shape we know, ask smpplib" -----


def _fast_deliver_sm(frame: bytes, status: int, sequence: int) -> Pdu | None:
    """deliver_sm (SMPP 3.4 §4.6.1) read in place; smpplib's fields, or None."""
    end = len(frame)
    find = frame.find
    # Each C-octet string must end within its limit (_MAX_CSTR) and each integer must be
    # there: a string without its NUL or a body cut short is left to smpplib, whose answer
    # (a MalformedPdu, or fields left unset) is the reference for such a frame.
    cut = find(_NUL, 16, 22)
    if cut < 0 or cut + 3 > end:
        return None
    service_type, source_ton, source_npi = frame[16:cut], frame[cut + 1], frame[cut + 2]
    start = cut + 3
    cut = find(_NUL, start, start + 21)
    if cut < 0 or cut + 3 > end:
        return None
    source_addr, dest_ton, dest_npi = frame[start:cut], frame[cut + 1], frame[cut + 2]
    start = cut + 3
    cut = find(_NUL, start, start + 21)
    if cut < 0 or cut + 4 > end:
        return None
    destination_addr = frame[start:cut]
    esm_class, protocol_id, priority = frame[cut + 1], frame[cut + 2], frame[cut + 3]
    start = cut + 4
    cut = find(_NUL, start, start + 17)
    if cut < 0:
        return None
    schedule = frame[start:cut]
    start = cut + 1
    cut = find(_NUL, start, start + 17)
    if cut < 0 or cut + 6 > end:
        return None
    validity = frame[start:cut]
    sm_length = frame[cut + 5]
    start = cut + 6
    stop = start + sm_length
    if stop > end:
        return None
    params = {
        "service_type": service_type, "source_addr_ton": source_ton,
        "source_addr_npi": source_npi, "source_addr": source_addr, "dest_addr_ton": dest_ton,
        "dest_addr_npi": dest_npi, "destination_addr": destination_addr,
        "esm_class": esm_class, "protocol_id": protocol_id, "priority_flag": priority,
        "schedule_delivery_time": schedule, "validity_period": validity,
        "registered_delivery": frame[cut + 1], "replace_if_present_flag": frame[cut + 2],
        "data_coding": frame[cut + 3], "sm_default_msg_id": frame[cut + 4],
        "sm_length": sm_length, "short_message": frame[start:stop],
    }  # fmt: skip
    tlvs = _parse_tlvs(frame[stop:], sequence) if stop < end else {}
    return Pdu(DELIVER_SM, status, sequence, params, tlvs)


def _fast_id_response(frame: bytes, command_id: int, status: int, sequence: int) -> Pdu | None:
    """submit_sm_resp / deliver_sm_resp: no body, or message_id and its NUL, nothing after."""
    length = len(frame)
    if length == MIN_LENGTH:
        return Pdu(command_id, status, sequence)
    # message_id is at most 64 characters (SMPP 3.4 §4.4.2); trailing TLVs go to smpplib.
    if length <= MIN_LENGTH + 65 and frame.find(_NUL, MIN_LENGTH) == length - 1:
        return Pdu(command_id, status, sequence, {"message_id": frame[MIN_LENGTH:-1]})
    return None


def _fast_response(
    name: str, sequence: int, status: int, params: Mapping[str, Any]
) -> bytes | None:
    """submit_sm_resp / deliver_sm_resp as smpplib writes them, or None."""
    if not params.keys() <= {"message_id"}:
        return None
    command_id = _FAST_RESPONSES[name]
    if status != ESME_ROK:
        return HEADER.pack(MIN_LENGTH, command_id, status, sequence)  # SMPP 3.4 §3.3
    message_id = params.get("message_id")
    if not message_id:
        body = _NUL
    elif type(message_id) is str:
        try:
            body = message_id[:64].encode("latin-1") + _NUL
        except UnicodeEncodeError:
            return None
    else:
        return None
    return HEADER.pack(MIN_LENGTH + len(body), command_id, status, sequence) + body


def _fast_submit_sm(sequence: int, status: int, params: Mapping[str, Any]) -> bytes | None:
    """submit_sm (SMPP 3.4 §4.4.1) with mandatory parameters only, as smpplib writes it."""
    if not _SUBMIT_KEYS.issuperset(params):
        return None  # an optional parameter by name: smpplib encodes it
    out = bytearray(MIN_LENGTH)
    get = params.get
    for name, limit in _SUBMIT_LAYOUT:
        value = get(name)
        if value is None:
            out.append(0)  # smpplib writes an unset integer or string as one NUL
        elif limit:
            if type(value) is not str:
                return None
            try:
                out += value[: limit - 1].encode("latin-1")
            except UnicodeEncodeError:
                return None
            out.append(0)
        elif type(value) is int and 0 <= value <= 0xFF:
            out.append(value)
        else:
            return None
    message = get("short_message")
    if not message:
        out.append(0)  # sm_length 0 and no octets, as smpplib's prep() leaves it
    elif type(message) is bytes and len(message) <= 254:
        out.append(len(message))
        out += message
    else:
        return None
    HEADER.pack_into(out, 0, len(out), SUBMIT_SM, status, sequence)
    return bytes(out)


def decode(frame: bytes) -> Pdu:
    """Decode one whole PDU (``command_length`` octets); raise ``MalformedPdu``."""
    if len(frame) < MIN_LENGTH:
        raise MalformedPdu("shorter than a PDU header")
    length, command_id, status, sequence = HEADER.unpack_from(frame)
    if length != len(frame):
        raise MalformedPdu("command_length does not match the PDU", sequence=sequence)
    pdu: Pdu | None = None
    if command_id == DELIVER_SM:
        pdu = _fast_deliver_sm(frame, status, sequence)
    elif command_id in _ID_RESPONSES:
        pdu = _fast_id_response(frame, command_id, status, sequence)
    elif command_id in _BARE_COMMANDS and length == MIN_LENGTH:
        # SMPP 3.4 §4.11, §4.2, §4.3: a header and nothing else.
        pdu = Pdu(command_id, status, sequence)
    return pdu if pdu is not None else _reference_decode(frame, command_id, status, sequence)


def reference_decode(frame: bytes) -> Pdu:
    """``decode`` through smpplib only: the reference the fast path is tested against."""
    if len(frame) < MIN_LENGTH:
        raise MalformedPdu("shorter than a PDU header")
    length, command_id, status, sequence = HEADER.unpack_from(frame)
    if length != len(frame):
        raise MalformedPdu("command_length does not match the PDU", sequence=sequence)
    return _reference_decode(frame, command_id, status, sequence)


def _reference_decode(frame: bytes, command_id: int, status: int, sequence: int) -> Pdu:
    try:
        name = command_codes.get_command_name(command_id)
        pdu = smpp.make_pdu(name, client=_CLIENT, allow_unknown_opt_params=True)
    except exceptions.UnknownCommandError:
        return Pdu(command_id, status, sequence, known=False)
    tlv_areas: list[bytes] = []
    # smpplib hands everything after the mandatory parameters to this method; taking it over
    # keeps its missing-TLV KeyErrors out and gives us the raw TLVs.
    pdu.parse_optional_params = tlv_areas.append
    try:
        pdu.parse(frame)
    except (struct.error, IndexError, ValueError, TypeError, KeyError) as exc:
        raise MalformedPdu(f"cannot parse {name}: {type(exc).__name__}", sequence=sequence) from exc
    params: dict[str, Any] = {}
    body_present = len(frame) > MIN_LENGTH
    for key in pdu.params_order if body_present else ():
        if pdu.field_is_optional(key):
            continue
        value = getattr(pdu, key, None)
        params[key] = value
        limit = _MAX_CSTR.get(key)
        if limit is not None and isinstance(value, bytes) and len(value) > limit:
            raise MalformedPdu(f"{key} too long or not terminated", sequence=sequence)
    if "short_message" in params:
        sm = params["short_message"] or b""
        if len(sm) != (params.get("sm_length") or 0):
            raise MalformedPdu("sm_length does not match short_message", sequence=sequence)
        params["short_message"] = bytes(sm)
    tlvs = _parse_tlvs(b"".join(tlv_areas), sequence)
    return Pdu(command_id, status, sequence, params, tlvs)


def encode(
    name: str,
    sequence: int,
    *,
    status: int = ESME_ROK,
    tlvs: Mapping[int, bytes] | None = None,
    **params: Any,
) -> bytes:
    """Encode one PDU; ``tlvs`` are appended raw (any tag, including those smpplib lacks)."""
    raw: bytes | None = None
    if name == "submit_sm":
        raw = _fast_submit_sm(sequence, status, params)
    elif name in _FAST_RESPONSES:
        raw = _fast_response(name, sequence, status, params)
    elif name in _FAST_BARE and not params:
        raw = HEADER.pack(MIN_LENGTH, _FAST_BARE[name], status, sequence)
    if raw is None:
        return reference_encode(name, sequence, status=status, tlvs=tlvs, **params)
    if tlvs:
        raw = _with_tlvs(raw, tlvs)
    return raw


def reference_encode(
    name: str,
    sequence: int,
    *,
    status: int = ESME_ROK,
    tlvs: Mapping[int, bytes] | None = None,
    **params: Any,
) -> bytes:
    """``encode`` through smpplib only: the reference the fast path is tested against."""
    short_message = params.get("short_message")
    if isinstance(short_message, bytes) and len(short_message) > 254:
        raise ValueError("short_message over 254 octets: use message_payload or split")
    pdu = smpp.make_pdu(name, client=_CLIENT, status=status, **params)
    pdu.sequence = sequence  # smpplib ignores sequence= in the constructor
    if status != ESME_ROK and pdu.is_response():
        # SMPP 3.4 §3.3: an error response carries no body.
        return HEADER.pack(MIN_LENGTH, pdu_command_id(name), status, sequence)
    raw: bytes = pdu.generate()
    return _with_tlvs(raw, tlvs) if tlvs else raw


def _with_tlvs(raw: bytes, tlvs: Mapping[int, bytes]) -> bytes:
    """``raw`` with ``tlvs`` appended (SMPP 3.4 §3.2.4.1) and command_length fixed."""
    extra = b"".join(struct.pack(">HH", t, len(v)) + v for t, v in tlvs.items())
    return struct.pack(">L", len(raw) + len(extra)) + raw[4:] + extra


def pdu_command_id(name: str) -> int:
    """The command_id of a command name known to smpplib."""
    code: int = command_codes.get_command_code(name)
    return code


def deliver_sm_resp(sequence: int, status: int) -> bytes:
    """deliver_sm_resp (SMPP 3.4 §4.6.2): message_id is unused (one NUL); no body on error.

    The hottest PDU we write, so it is packed directly rather than through smpplib; the
    equivalence is checked in tests/edges/smpp/test_smpp_codec.py.
    """
    if status != ESME_ROK:
        return HEADER.pack(MIN_LENGTH, DELIVER_SM | RESPONSE_BIT, status, sequence)
    return HEADER.pack(MIN_LENGTH + 1, DELIVER_SM | RESPONSE_BIT, status, sequence) + b"\x00"


def generic_nack(sequence: int, status: int) -> bytes:
    """generic_nack (SMPP 3.4 §4.3.1): a header only."""
    return HEADER.pack(MIN_LENGTH, GENERIC_NACK, status, sequence)


def header(frame: bytes) -> tuple[int, int, int, int]:
    """(command_length, command_id, command_status, sequence_number) of a frame's header."""
    length, command_id, status, sequence = HEADER.unpack_from(frame)
    return length, command_id, status, sequence


def tlv_u8(value: int) -> bytes:
    """A one-octet TLV value."""
    return bytes([value & 0xFF])


def tlv_u16(value: int) -> bytes:
    """A two-octet TLV value."""
    return struct.pack(">H", value & 0xFFFF)
