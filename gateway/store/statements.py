"""The writer's SQL (I/O layer): one group commit in as few round trips as the data allows.

A batch costs four statements between BEGIN and COMMIT, whatever its size:

1. ``lock_contacts``: create missing contacts and lock all of them (``ON CONFLICT DO
   UPDATE`` returns and locks existing rows too; rows go in sorted order, so two instances
   always lock in the same order and never deadlock);
2. ``record_inbound``: insert the inbound events (``ON CONFLICT (dedupe_key) DO NOTHING``)
   and read the current consent of those contacts, in one statement. The read sees every
   change committed before it, because no other transaction can change these contacts'
   consent while we hold their rows;
3. ``lock_head``: lock ``ledger_head`` and read the chain's last link (held to COMMIT);
4. ``write_changes``: ledger events, the new head, consent rows, the cancelled replies
   and the new outbox rows, as data-modifying CTEs of one statement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from keywords.model import ConsentState

if TYPE_CHECKING:
    from gateway.store.db import Connection

KeyState = tuple[int, str, str, str]  # contact_id, sender, channel, program


async def lock_contacts(
    conn: Connection, pairs: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    """Contact ids of (channel, address) pairs, created if new, locked until COMMIT."""
    ordered = sorted(set(pairs))
    rows = await conn.fetch(
        "INSERT INTO contacts (channel, address)"
        " SELECT * FROM unnest($1::text[], $2::text[]) AS u(ch, a) ORDER BY ch, a"
        # A no-op update: it is what makes ON CONFLICT lock and return the existing row.
        " ON CONFLICT (channel, address) DO UPDATE SET channel = EXCLUDED.channel"
        " RETURNING id, channel, address",
        [p[0] for p in ordered],
        [p[1] for p in ordered],
    )
    return {(r["channel"], r["address"]): r["id"] for r in rows}


@dataclass(frozen=True, slots=True)
class InboundRow:
    """One inbound_events row to insert."""

    dedupe_key: str
    channel: str
    sender: str
    contact_id: int
    method: str
    received_at: datetime
    carrier_time: datetime | None
    intent: str
    match: str
    needs_review: bool
    body: str
    evidence: str  # canonical JSON


async def record_inbound(
    conn: Connection, rows: Sequence[InboundRow], scopes: Sequence[tuple[int, str, str]]
) -> tuple[dict[str, int], dict[KeyState, tuple[ConsentState, int]]]:
    """Insert new inbound events; read consent for (contact, sender, channel) scopes.

    Returns the ids of the events inserted now (a duplicate key is absent) and the current
    (state, version) of every consent row in the scopes.
    """
    result = await conn.fetch(
        "WITH ins AS ("
        " INSERT INTO inbound_events (dedupe_key, channel, sender, contact_id, method,"
        " received_at, carrier_time, intent, match, needs_review, body, evidence)"
        " SELECT k, ch, s, c, m, r, ct, i, mt, nr, b, e::jsonb FROM unnest("
        " $1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::timestamptz[],"
        " $7::timestamptz[], $8::text[], $9::text[], $10::bool[], $11::text[], $12::text[])"
        " AS u(k, ch, s, c, m, r, ct, i, mt, nr, b, e)"
        " ON CONFLICT (dedupe_key) DO NOTHING RETURNING id, dedupe_key)"
        " SELECT id, dedupe_key, NULL::bigint AS contact_id, NULL AS sender, NULL AS channel,"
        " NULL AS program, NULL AS state, NULL::bigint AS version FROM ins"
        " UNION ALL"
        " SELECT NULL, NULL, contact_id, sender, channel, program, state, version FROM consent"
        " WHERE (contact_id, sender, channel) IN"
        " (SELECT * FROM unnest($13::bigint[], $14::text[], $15::text[]))",
        [r.dedupe_key for r in rows],
        [r.channel for r in rows],
        [r.sender for r in rows],
        [r.contact_id for r in rows],
        [r.method for r in rows],
        [r.received_at for r in rows],
        [r.carrier_time for r in rows],
        [r.intent for r in rows],
        [r.match for r in rows],
        [r.needs_review for r in rows],
        [r.body for r in rows],
        [r.evidence for r in rows],
        [s[0] for s in scopes],
        [s[1] for s in scopes],
        [s[2] for s in scopes],
    )
    fresh: dict[str, int] = {}
    states: dict[KeyState, tuple[ConsentState, int]] = {}
    for r in result:
        if r["dedupe_key"] is not None:
            fresh[r["dedupe_key"]] = r["id"]
        else:
            key = (r["contact_id"], r["sender"], r["channel"], r["program"])
            states[key] = (ConsentState(r["state"]), r["version"])
    return fresh, states


async def existing_inbound(conn: Connection, keys: list[str]) -> dict[str, int]:
    """Ids of inbound events recorded earlier under ``keys``."""
    rows = await conn.fetch(
        "SELECT id, dedupe_key FROM inbound_events WHERE dedupe_key = ANY($1::text[])", keys
    )
    return {r["dedupe_key"]: r["id"] for r in rows}


async def lock_head(conn: Connection) -> tuple[int, bytes]:
    """The chain's last (seq, hash), locked until COMMIT: appends are serialised here."""
    head = await conn.fetchrow("SELECT seq, hash FROM ledger_head FOR UPDATE")
    assert head is not None, "ledger_head is created by migration 001"
    return head["seq"], bytes(head["hash"])


class _Params:
    """Numbered parameters for a statement assembled from optional parts."""

    def __init__(self) -> None:
        self.values: list[object] = []

    def __call__(self, value: object, cast: str) -> str:
        self.values.append(value)
        return f"${len(self.values)}::{cast}"


@dataclass(frozen=True, slots=True)
class Changes:
    """Everything one batch writes after deciding."""

    # seq, contact_id, channel, sender, program, action, method, old, new, server_time,
    # carrier_time, inbound_id, evidence, evidence_sha256, prev_hash, hash
    ledger: Sequence[tuple[object, ...]]
    head: tuple[int, bytes] | None  # the new (seq, hash), when ledger rows were added
    consent: Sequence[tuple[int, str, str, str, str, int, datetime, int]]
    cancel_scopes: Sequence[tuple[int, str, str]]  # (contact, sender, channel) opted out
    # channel, sender, program, contact_id, recipient, kind, language, body, inbound_id, status
    outbox: Sequence[Sequence[object]]


_LEDGER_TYPES = (
    "bigint[]", "bigint[]", "text[]", "text[]", "text[]", "text[]", "text[]", "text[]",
    "text[]", "timestamptz[]", "timestamptz[]", "bigint[]", "text[]", "bytea[]", "bytea[]",
    "bytea[]",
)  # fmt: skip
_CONSENT_TYPES = (
    "bigint[]",
    "text[]",
    "text[]",
    "text[]",
    "text[]",
    "bigint[]",
    "timestamptz[]",
    "bigint[]",
)
_OUTBOX_TYPES = (
    "text[]", "text[]", "text[]", "bigint[]", "text[]", "text[]", "text[]", "text[]", "bigint[]",
    "text[]",
)  # fmt: skip


def _columns(p: _Params, rows: Sequence[Sequence[object]], types: Sequence[str]) -> list[str]:
    return [p([row[i] for row in rows], cast) for i, cast in enumerate(types)]


async def write_changes(conn: Connection, changes: Changes) -> dict[int, list[int]]:
    """Write a batch's changes in one statement; return outbox ids per inbound event."""
    p = _Params()
    parts: list[str] = []
    if changes.ledger:
        cols = ", ".join(_columns(p, changes.ledger, _LEDGER_TYPES))
        parts.append(
            "l AS (INSERT INTO ledger (seq, contact_id, channel, sender, program, action,"
            " method, old_state, new_state, server_time, carrier_time, inbound_id, evidence,"
            " evidence_sha256, prev_hash, hash) SELECT q, c, ch, s, pr, a, m, o, n, t, ct, i,"
            f" e::jsonb, d, ph, h FROM unnest({cols})"
            " AS u(q, c, ch, s, pr, a, m, o, n, t, ct, i, e, d, ph, h))"
        )
    if changes.head is not None:
        seq, digest = changes.head
        parts.append(
            f"h AS (UPDATE ledger_head SET seq = {p(seq, 'bigint')}, hash = {p(digest, 'bytea')})"
        )
    if changes.consent:
        cols = ", ".join(_columns(p, changes.consent, _CONSENT_TYPES))
        parts.append(
            "c AS (INSERT INTO consent (contact_id, sender, channel, program, state, version,"
            f" updated_at, last_seq) SELECT * FROM unnest({cols})"
            " ON CONFLICT (contact_id, sender, program, channel) DO UPDATE SET"
            " state = EXCLUDED.state, version = EXCLUDED.version,"
            " updated_at = EXCLUDED.updated_at, last_seq = EXCLUDED.last_seq)"
        )
    if changes.cancel_scopes:
        # An opt-out cancels the person's unsent opt-in replies from earlier batches (the
        # writer cancels this batch's own before they are written). The predicate repeats
        # the partial index outbox_cancellable's, so the planner uses it.
        ids = p([s[0] for s in changes.cancel_scopes], "bigint[]")
        senders = p([s[1] for s in changes.cancel_scopes], "text[]")
        channels = p([s[2] for s in changes.cancel_scopes], "text[]")
        parts.append(
            "x AS (UPDATE outbox o SET status = 'cancelled', last_error = 'recipient opted out'"
            " WHERE o.status = 'queued' AND o.kind IN ('opt_in', 'pending', 'already_opted_in')"
            f" AND o.contact_id = ANY({ids}) AND (o.contact_id, o.sender, o.channel) IN"
            f" (SELECT * FROM unnest({ids}, {senders}, {channels})))"
        )
    if changes.outbox:
        cols = ", ".join(_columns(p, changes.outbox, _OUTBOX_TYPES))
        parts.append(
            "o AS (INSERT INTO outbox (channel, sender, program, contact_id, recipient, kind,"
            " language, body, inbound_id, status, last_error)"
            " SELECT ch, s, pr, c, r, k, lg, b, i, st,"
            " CASE WHEN st = 'cancelled' THEN 'recipient opted out' END"
            f" FROM unnest({cols}) AS u(ch, s, pr, c, r, k, lg, b, i, st)"
            " RETURNING id, inbound_id)"
        )
        tail = "SELECT id, inbound_id FROM o"
    else:
        tail = "SELECT NULL::bigint AS id, NULL::bigint AS inbound_id WHERE false"
    if not parts:
        return {}
    rows = await conn.fetch(f"WITH {', '.join(parts)} {tail}", *p.values)
    out: dict[int, list[int]] = {}
    for r in rows:
        out.setdefault(r["inbound_id"], []).append(r["id"])
    return out
