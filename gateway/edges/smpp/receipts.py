"""Delivery receipts (I/O layer, SMPP edge): recognise them and read what they report.

SMPP 3.4 §5.2.12: in a deliver_sm, ``(esm_class & 0x3C) == 0x04`` marks an SMSC delivery
receipt (0x08 SME delivery acknowledgement, 0x10 manual/user acknowledgement, 0x20
intermediate notification are receipts too). None of them is a subscriber's text. The id
comes from the receipted_message_id TLV (§5.3.2.12) when present, else from the Appendix B
text ``id:... sub:... dlvrd:... submit date:... done date:... stat:... err:... text:...``;
the state from message_state (§5.2.28) or ``stat:``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.edges.smpp import codec
from gateway.edges.smpp.codec import Pdu

_RECEIPT_TYPES = frozenset({0x04, 0x08, 0x10, 0x20})
_FIELD_RE = re.compile(r"(id|stat|err|done date):\s*(\S+)", re.IGNORECASE)
# message_state values, SMPP 3.4 §5.2.28, named as Appendix B's stat: field names them.
_STATES = {
    1: "ENROUTE", 2: "DELIVRD", 3: "EXPIRED", 4: "DELETED", 5: "UNDELIV", 6: "ACCEPTD",
    7: "UNKNOWN", 8: "REJECTD",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Receipt:
    """What an SMSC says happened to a message we submitted."""

    message_id: str
    state: str
    error: str
    done_at: datetime | None


def is_receipt(esm_class: int) -> bool:
    """True when esm_class marks a receipt or acknowledgement, not a subscriber's text."""
    return (esm_class & 0x3C) in _RECEIPT_TYPES


def _done_at(value: str) -> datetime | None:
    # YYMMDDhhmm[ss]; the SMSC's clock and zone are unknown, UTC is the usual convention.
    for fmt in ("%y%m%d%H%M%S", "%y%m%d%H%M"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def parse_receipt(pdu: Pdu, text: str) -> Receipt | None:
    """Read a receipt from its TLVs and text; None when it names no message id."""
    fields = {k.lower(): v for k, v in _FIELD_RE.findall(text)}
    message_id = pdu.tlv_cstr(codec.TAG_RECEIPTED_MESSAGE_ID) or fields.get("id", "")
    if not message_id:
        return None
    state_code = pdu.tlv_int(codec.TAG_MESSAGE_STATE)
    state = _STATES.get(state_code or 0) or fields.get("stat", "UNKNOWN").upper()
    error = fields.get("err", "")
    network_error = pdu.tlvs.get(codec.TAG_NETWORK_ERROR_CODE)
    if network_error:
        error = error or network_error.hex()
    done = fields.get("done date")
    return Receipt(message_id, state[:16], error[:32], _done_at(done) if done else None)
