"""The ledger's canonical JSON: the fast encoder writes exactly what the json module writes.

Every evidence digest and chain hash already stored was computed over the json module's
output, and ``audit verify`` recomputes them with whatever ``evidence_json`` and
``event_hash`` do today. So orjson may stand in for json only if the two agree byte for byte
on every input; these properties are that promise.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.store.ledger import LedgerEvent, event_hash, evidence_json

_EVIDENCE = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))
_FIELDS = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


@settings(max_examples=2_000, deadline=None)
@given(st.dictionaries(st.text(), st.text(), max_size=12))
def test_evidence_text_is_the_json_modules(evidence: dict[str, str]) -> None:
    """Any keys and values, control characters, non-BMP text and lone surrogates included."""
    assert evidence_json(evidence) == _EVIDENCE.encode(evidence)


def test_evidence_characters_that_need_escaping() -> None:
    tricky = {"q": '"', "b": "\\", "nl": "\n\r\t\b\f", "ctl": "\x00\x1f\x7f", "ls": "\u2028\u2029"}
    tricky |= {"astral": "\U0001f600", "bom": "\ufeff", "lone": "\ud800", "é": "ÿ"}
    assert evidence_json(tricky) == _EVIDENCE.encode(tricky)


def _event(text: str, number: int, carrier: datetime | None) -> LedgerEvent:
    return LedgerEvent(
        seq=number,
        contact_id=number,
        channel=text,
        sender=text,
        program=text,
        action="opt_out",
        method="mailto",
        old_state="opted_in",
        new_state="opted_out",
        server_time=datetime(2026, 11, 28, 3, 0, 0, 123456, tzinfo=UTC),
        carrier_time=carrier,
        inbound_id=number if number % 2 else None,
        evidence_sha256=hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest(),
    )


@settings(max_examples=1_000, deadline=None)
@given(
    st.text(),
    st.integers(min_value=0, max_value=2**70),  # past 64 bits orjson refuses: json takes it
    st.none() | st.datetimes(timezones=st.just(UTC)),
)
def test_chain_hash_is_over_the_json_modules_text(
    text: str, number: int, carrier: datetime | None
) -> None:
    event = _event(text, number, carrier)
    prev = bytes(range(32))
    fields = [
        prev.hex(), event.seq, event.contact_id, event.channel, event.sender, event.program,
        event.action, event.method, event.old_state, event.new_state,
        event.server_time.isoformat(), carrier.isoformat() if carrier else None,
        event.inbound_id, event.evidence_sha256.hex(),
    ]  # fmt: skip
    try:
        expected = hashlib.sha256(_FIELDS.encode(fields).encode()).digest()
    except UnicodeEncodeError:
        return  # a lone surrogate cannot be hashed by either (no such text reaches the ledger)
    assert event_hash(prev, event) == expected
