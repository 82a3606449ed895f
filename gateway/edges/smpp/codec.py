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

_BARE_RESPONSES = frozenset(
    {SUBMIT_SM | RESPONSE_BIT, ENQUIRE_LINK | RESPONSE_BIT, UNBIND | RESPONSE_BIT}
)
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


def decode(frame: bytes) -> Pdu:
    """Decode one whole PDU (``command_length`` octets); raise ``MalformedPdu``."""
    if len(frame) < MIN_LENGTH:
        raise MalformedPdu("shorter than a PDU header")
    length, command_id, status, sequence = HEADER.unpack_from(frame)
    if length != len(frame):
        raise MalformedPdu("command_length does not match the PDU", sequence=sequence)
    if command_id in _BARE_RESPONSES:
        # submit_sm_resp and the body-less responses: only message_id (a C-octet string,
        # SMPP 3.4 §4.4.2) to read, so smpplib's per-PDU object setup is skipped on the
        # hottest inbound path. tests/edges/smpp/test_smpp_codec.py checks both readings agree.
        message_id = frame[MIN_LENGTH:].split(b"\x00", 1)[0]
        fields: dict[str, Any] = {"message_id": message_id} if length > MIN_LENGTH else {}
        return Pdu(command_id, status, sequence, fields)
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
    short_message = params.get("short_message")
    if isinstance(short_message, bytes) and len(short_message) > 254:
        raise ValueError("short_message over 254 octets: use message_payload or split")
    pdu = smpp.make_pdu(name, client=_CLIENT, status=status, **params)
    pdu.sequence = sequence  # smpplib ignores sequence= in the constructor
    if status != ESME_ROK and pdu.is_response():
        # SMPP 3.4 §3.3: an error response carries no body.
        return HEADER.pack(MIN_LENGTH, pdu_command_id(name), status, sequence)
    raw: bytes = pdu.generate()
    if tlvs:
        extra = b"".join(struct.pack(">HH", t, len(v)) + v for t, v in tlvs.items())
        raw = struct.pack(">L", len(raw) + len(extra)) + raw[4:] + extra
    return raw


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
