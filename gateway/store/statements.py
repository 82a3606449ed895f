"""The writer's SQL (I/O layer): one group commit in as few round trips as the data allows.

A batch costs three or four statements between BEGIN and COMMIT, whatever its size:

1. ``lock_contacts``: create missing contacts and lock all of them (``ON CONFLICT DO
   UPDATE`` returns and locks existing rows too; rows go in sorted order, so two instances
   always lock in the same order and never deadlock);
2. ``record_inbound``: insert the inbound events (``ON CONFLICT (dedupe_key) DO NOTHING``)
   and read the current consent and unsent opt-in replies of those contacts, in one
   statement. The read sees every change committed before it, because no other transaction
   can change these contacts' consent or queue them a reply while we hold their rows;
3. ``lock_head``: lock ``ledger_head`` and read the chain's last link (held to COMMIT),
   only when the writer does not know the head already (see writer.py);
4. ``write_changes``: ledger events, the head moved on (only if it is still the one the
   events were chained from, else ``HeadMoved``), consent rows, the cancelled replies and
   the new outbox rows, as data-modifying CTEs of one statement.

The statements are prepared, and a prepared statement's generic plan is made once, often
while the tables are still empty; so every read is written as an index probe per key that
no plan can turn into a scan of a whole table (tests/store/test_store_plans.py).
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


@dataclass(frozen=True, slots=True)
class Recorded:
    """What ``record_inbound`` found."""

    fresh: dict[str, int]  # dedupe key -> inbound id, for the events inserted now
    states: dict[KeyState, tuple[ConsentState, int]]  # current (state, version) in the scopes
    # (contact, sender, channel) -> ids of its unsent opt-in replies, which an opt-out in
    # this batch cancels. No other transaction can add one while we hold the contact.
    cancellable: dict[tuple[int, str, str], list[int]]


# The consent rows and unsent replies are found by one index probe per scope: the LATERAL
# subqueries carry OFFSET 0 so the planner cannot flatten them into joins, which it runs as
# hash joins over sequential scans of whole tables whenever its statistics are stale or
# absent (a new schema, a bulk load, before autovacuum's first ANALYZE).
RECORD_INBOUND = (
    "WITH ins AS ("
    " INSERT INTO inbound_events (dedupe_key, channel, sender, contact_id, method,"
    " received_at, carrier_time, intent, match, needs_review, body, evidence)"
    " SELECT k, ch, s, c, m, r, ct, i, mt, nr, b, e::jsonb FROM unnest("
    " $1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::timestamptz[],"
    " $7::timestamptz[], $8::text[], $9::text[], $10::bool[], $11::text[], $12::text[])"
    " AS u(k, ch, s, c, m, r, ct, i, mt, nr, b, e)"
    " ON CONFLICT (dedupe_key) DO NOTHING RETURNING id, dedupe_key),"
    " q AS (SELECT * FROM unnest($13::bigint[], $14::text[], $15::text[]) AS q(c, s, ch))"
    " SELECT 'i' AS row, id, dedupe_key, NULL::bigint AS contact_id, NULL AS sender,"
    " NULL AS channel, NULL AS program, NULL AS state, NULL::bigint AS version FROM ins"
    " UNION ALL"
    " SELECT 's', NULL, NULL, q.c, q.s, q.ch, k.program, k.state, k.version FROM q"
    " CROSS JOIN LATERAL (SELECT program, state, version FROM consent"
    " WHERE contact_id = q.c AND sender = q.s AND channel = q.ch OFFSET 0) k"
    " UNION ALL"
    # The predicate repeats the partial index outbox_cancellable's (migration 005).
    " SELECT 'o', k.id, NULL, q.c, q.s, q.ch, NULL, NULL, NULL FROM q"
    " CROSS JOIN LATERAL (SELECT id FROM outbox WHERE contact_id = q.c"
    " AND status IN ('queued', 'sending') AND kind IN ('opt_in', 'pending', 'already_opted_in')"
    " AND sender = q.s AND channel = q.ch OFFSET 0) k"
)


async def record_inbound(
    conn: Connection, rows: Sequence[InboundRow], scopes: Sequence[tuple[int, str, str]]
) -> Recorded:
    """Insert new inbound events; read consent and unsent opt-in replies in the scopes.

    ``scopes`` are (contact, sender, channel); the contacts must be locked already.
    """
    result = await conn.fetch(
        RECORD_INBOUND,
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
    out = Recorded({}, {}, {})
    for r in result:
        kind = r["row"]
        if kind == "i":
            out.fresh[r["dedupe_key"]] = r["id"]
        elif kind == "s":
            key = (r["contact_id"], r["sender"], r["channel"], r["program"])
            out.states[key] = (ConsentState(r["state"]), r["version"])
        else:
            scope = (r["contact_id"], r["sender"], r["channel"])
            out.cancellable.setdefault(scope, []).append(r["id"])
    return out


async def existing_inbound(conn: Connection, keys: list[str]) -> dict[str, int]:
    """Ids of inbound events recorded earlier under ``keys``."""
    rows = await conn.fetch(
        "SELECT id, dedupe_key FROM inbound_events WHERE dedupe_key = ANY($1::text[])", keys
    )
    return {r["dedupe_key"]: r["id"] for r in rows}


class HeadMoved(Exception):
    """Another transaction appended to the ledger first: chain the batch again."""


async def lock_head(conn: Connection) -> tuple[int, bytes]:
    """The chain's last (seq, hash), locked until COMMIT."""
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
    # (chained from, new) heads as (seq, hash), when ledger rows were added: the head moves
    # only if it still is the one the rows were chained from.
    head: tuple[tuple[int, bytes], tuple[int, bytes]] | None
    consent: Sequence[tuple[int, str, str, str, str, int, datetime, int]]
    cancel: Sequence[int]  # outbox ids of unsent opt-in replies to people who opted out
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
        (old_seq, old_digest), (seq, digest) = changes.head
        # The row lock is taken here and held to COMMIT. The test is in SET, not WHERE: an
        # UPDATE that finds the row locked waits, then re-evaluates its expressions on the
        # version the other transaction committed (READ COMMITTED), whereas a WHERE that
        # fails on the version in its snapshot skips the row without waiting at all.
        same = f"seq = {p(old_seq, 'bigint')} AND hash = {p(old_digest, 'bytea')}"
        new_seq, new_hash = p(seq, "bigint"), p(digest, "bytea")
        parts.append(
            f"h AS (UPDATE ledger_head SET seq = CASE WHEN {same} THEN {new_seq} ELSE seq END,"
            f" hash = CASE WHEN {same} THEN {new_hash} ELSE hash END"
            f" RETURNING seq = {new_seq} AND hash = {new_hash} AS moved)"
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
    if changes.cancel:
        # An opt-out cancels the person's unsent opt-in replies from earlier batches, queued
        # or leased for sending (record_inbound found them; the writer cancels this batch's
        # own before they are written). The status test runs on each row's newest version,
        # so a reply the worker has marked 'sent' meanwhile stays 'sent'.
        parts.append(
            "x AS (UPDATE outbox SET status = 'cancelled', last_error = 'recipient opted out'"
            f" WHERE id = ANY({p(list(changes.cancel), 'bigint[]')})"
            " AND status IN ('queued', 'sending'))"
        )
    moved = "(SELECT count(*) FROM h WHERE moved)" if changes.head is not None else "1"
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
        rows = " UNION ALL SELECT id, inbound_id, NULL FROM o"
    else:
        rows = ""
    if not parts:
        return {}
    # The first row says whether the head moved (always, without ledger rows to chain).
    tail = f"SELECT NULL::bigint AS id, NULL::bigint AS inbound_id, {moved} AS moved{rows}"
    result = await conn.fetch(f"WITH {', '.join(parts)} {tail}", *p.values)
    if result[0]["moved"] != 1:
        raise HeadMoved("ledger_head is no longer the head the batch was chained from")
    out: dict[int, list[int]] = {}
    for r in result[1:]:
        out.setdefault(r["inbound_id"], []).append(r["id"])
    return out
