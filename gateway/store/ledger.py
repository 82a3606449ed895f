"""The ledger's hash chain (I/O layer): how an event is hashed, and the audit that re-checks it.

Each event's hash is SHA-256 over a canonical JSON array of its fields, the previous
event's hash first. ``seq`` is gap-free, so an altered row changes its own hash, an inserted
or deleted row breaks the link of the row after it, and a deleted tail no longer reaches
``ledger_head`` (docs/DESIGN.md, invariant 4). Evidence enters the chain through its own digest,
so erasure can redact evidence without breaking the chain, and ``verify`` reports it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from asyncpg import Record

    from gateway.store.db import Connection

GENESIS = bytes(32)


@dataclass(frozen=True, slots=True)
class LedgerEvent:
    """One ledger row, exactly the fields the chain covers."""

    seq: int
    contact_id: int
    channel: str
    sender: str
    program: str
    action: str
    method: str
    old_state: str
    new_state: str
    server_time: datetime
    carrier_time: datetime | None
    inbound_id: int | None
    evidence_sha256: bytes


# The canonical form is the json module's with these options: every stored digest and hash
# was made from it, so it can never change. orjson writes the same bytes for every input it
# accepts (tests/store/test_store_ledger_format.py compares them) at a fifth of the cost, and
# both run for every consent change; what orjson refuses (a lone surrogate) goes to json.
_EVIDENCE = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))
_FIELDS = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def event_from_row(row: Record) -> LedgerEvent:
    """The hashed fields of one ``ledger`` row, as ``event_hash`` takes them."""
    return LedgerEvent(
        seq=row["seq"],
        contact_id=row["contact_id"],
        channel=row["channel"],
        sender=row["sender"],
        program=row["program"],
        action=row["action"],
        method=row["method"],
        old_state=row["old_state"],
        new_state=row["new_state"],
        server_time=row["server_time"],
        carrier_time=row["carrier_time"],
        inbound_id=row["inbound_id"],
        evidence_sha256=bytes(row["evidence_sha256"]),
    )


def _canonical(value: object, encoder: json.JSONEncoder, option: int) -> str:
    try:
        return orjson.dumps(value, option=option).decode()
    except orjson.JSONEncodeError:
        return encoder.encode(value)


def evidence_json(evidence: Mapping[str, str]) -> str:
    """The canonical text of an evidence mapping: what is stored and what is digested."""
    return _canonical(dict(evidence), _EVIDENCE, orjson.OPT_SORT_KEYS)


def evidence_digest(canonical: str) -> bytes:
    """SHA-256 of the canonical evidence text."""
    return hashlib.sha256(canonical.encode()).digest()


def event_hash(prev_hash: bytes, event: LedgerEvent) -> bytes:
    """The chain link for ``event`` after ``prev_hash``."""
    fields = [
        prev_hash.hex(),
        event.seq,
        event.contact_id,
        event.channel,
        event.sender,
        event.program,
        event.action,
        event.method,
        event.old_state,
        event.new_state,
        event.server_time.isoformat(),
        event.carrier_time.isoformat() if event.carrier_time else None,
        event.inbound_id,
        event.evidence_sha256.hex(),
    ]
    return hashlib.sha256(_canonical(fields, _FIELDS, 0).encode()).digest()


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The result of ``gateway audit verify``."""

    events: int
    problems: tuple[str, ...]
    redacted: int

    @property
    def ok(self) -> bool:
        """True when the chain is intact from genesis to the head."""
        return not self.problems


_MISSING_REFERENCES = (
    "SELECT l.seq, 'contact' FROM ledger l"
    " WHERE NOT EXISTS (SELECT 1 FROM contacts c WHERE c.id = l.contact_id)"
    " UNION ALL SELECT l.seq, 'inbound event' FROM ledger l WHERE l.inbound_id IS NOT NULL"
    " AND NOT EXISTS (SELECT 1 FROM inbound_events i WHERE i.id = l.inbound_id)"
    " ORDER BY 1 LIMIT 100"
)


async def verify(conn: Connection, *, batch: int = 10_000) -> VerifyReport:
    """Walk the whole ledger in ``seq`` order and re-derive every hash; then find any row
    whose contact or inbound event is missing (at most 100 of them)."""
    problems: list[str] = []
    redacted = 0
    prev_hash = GENESIS
    expected_seq = 1
    count = 0
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        head = await conn.fetchrow("SELECT seq, hash FROM ledger_head")
        cursor = conn.cursor("SELECT * FROM ledger ORDER BY seq", prefetch=batch)
        async for row in cursor:
            count += 1
            seq = row["seq"]
            if seq != expected_seq:
                problems.append(f"seq {seq}: expected seq {expected_seq} (rows missing)")
            if bytes(row["prev_hash"]) != prev_hash:
                problems.append(f"seq {seq}: prev_hash does not link to the previous event")
            event = event_from_row(row)
            digest = event_hash(bytes(row["prev_hash"]), event)
            if digest != bytes(row["hash"]):
                problems.append(f"seq {seq}: contents do not match the stored hash (altered)")
            if row["evidence"] is None:
                redacted += 1
            elif evidence_digest(_canonical_stored(row["evidence"])) != event.evidence_sha256:
                problems.append(f"seq {seq}: evidence does not match its digest (altered)")
            prev_hash = bytes(row["hash"])
            expected_seq = seq + 1
        # The references the writer keeps without foreign keys (migration 009).
        for seq, missing in await conn.fetch(_MISSING_REFERENCES):
            problems.append(f"seq {seq}: its {missing} is missing (deleted)")
    if head is None:
        problems.append("ledger_head is missing")
    else:
        if head["seq"] != expected_seq - 1:
            problems.append(
                f"ledger_head says {head['seq']} events, the table ends at {expected_seq - 1}"
            )
        if bytes(head["hash"]) != prev_hash:
            problems.append("ledger_head hash does not match the last event (tail altered)")
    return VerifyReport(events=count, problems=tuple(problems), redacted=redacted)


def _canonical_stored(value: str) -> str:
    """Evidence comes back from jsonb as text with jsonb's own spacing: re-canonicalize it."""
    loaded = json.loads(value)
    return evidence_json(loaded)
