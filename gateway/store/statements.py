"""The writer's SQL (I/O layer): one group commit in as few round trips as the data allows.

A batch costs two or three statements between BEGIN and COMMIT, whatever its size:

1. ``record`` calls ``writer_record`` (migration 008), which creates missing contacts and
   locks all of them (``ON CONFLICT DO UPDATE`` returns and locks existing rows too; rows go
   in sorted order, so two instances always lock in the same order and never deadlock), then,
   in a statement of its own and so from a snapshot taken with the locks held, inserts the
   inbound events (``ON CONFLICT (dedupe_key) DO NOTHING``) and reads the current consent,
   unsent opt-in replies and open keep offers of those contacts (migration 003). The read
   sees every change committed before it, because no other transaction can change these
   contacts' consent or queue them a reply while we hold their rows;
2. ``lock_head``: lock ``ledger_head`` and read the chain's last link (held to COMMIT),
   only when the writer does not know the head already (see chain.py);
3. ``write_changes``: the head moved on (only if it is still the one the events were
   chained from, else ``HeadMoved``; first, so no ledger row is written without the head's
   lock), ledger events, consent rows, the cancelled replies and the new outbox rows, as
   data-modifying CTEs of one statement.

The statements are prepared (and PL/pgSQL keeps generic plans too), and a generic plan is
made once, often while the tables are still empty; so every read is written as an index
probe per key that no plan can turn into a scan of a whole table
(tests/store/test_store_plans.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from keywords.model import ConsentState

if TYPE_CHECKING:
    from gateway.store.db import Connection

KeyState = tuple[int, str, str, str]  # contact_id, sender, channel, program


@dataclass(frozen=True, slots=True)
class InboundRow:
    """One inbound_events row to insert; the contact is named by (channel, address)."""

    dedupe_key: str
    channel: str
    address: str
    sender: str
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
    """What ``record`` did and found."""

    contact_ids: dict[tuple[str, str], int]  # (channel, address) -> id, now locked
    fresh: dict[str, int]  # dedupe key -> inbound id, for the events inserted now
    states: dict[KeyState, tuple[ConsentState, int]]  # current (state, version) in the scopes
    # (contact, sender, channel) -> ids of its unsent opt-in replies, which an opt-out in
    # this batch cancels. No other transaction can add one while we hold the contact.
    cancellable: dict[tuple[int, str, str], list[int]]
    # (contact, sender, channel) -> its open keep offer (keywords/keep.py, migration 003).
    offers: dict[tuple[int, str, str], KeepOffer] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class KeepOffer:
    """An open keep offer: the inbound event whose confirmation made it, and its programs
    in the order of their numbers."""

    inbound_id: int
    programs: tuple[str, ...]


async def record(
    conn: Connection, contacts: Sequence[tuple[str, str]], rows: Sequence[InboundRow]
) -> Recorded:
    """Steps 1 and 2 in one round trip: ``writer_record`` (migrations 001 and 003).

    ``contacts`` are every (channel, address) of the batch; ``rows`` one per distinct event.
    """
    result = await conn.fetch(
        "SELECT * FROM writer_record($1::writer_contact_row[], $2::writer_inbound_row[])",
        sorted(set(contacts)),
        [
            (
                r.dedupe_key,
                r.channel,
                r.address,
                r.sender,
                r.method,
                r.received_at,
                r.carrier_time,
                r.intent,
                r.match,
                r.needs_review,
                r.body,
                r.evidence,
            )
            for r in rows
        ],
    )
    out = Recorded({}, {}, {}, {})
    offered: dict[tuple[int, str, str], tuple[int, list[tuple[int, str]]]] = {}
    for r in result:
        kind = r["kind"]
        if kind == "c":
            out.contact_ids[(r["channel"], r["address"])] = r["id"]
        elif kind == "i":
            out.fresh[r["dedupe_key"]] = r["id"]
        elif kind == "s":
            key = (r["contact_id"], r["sender"], r["channel"], r["program"])
            out.states[key] = (ConsentState(r["state"]), r["version"])
        elif kind == "k":
            scope = (r["contact_id"], r["sender"], r["channel"])
            offered.setdefault(scope, (r["id"], []))[1].append((r["version"], r["program"]))
        else:
            scope = (r["contact_id"], r["sender"], r["channel"])
            out.cancellable.setdefault(scope, []).append(r["id"])
    for scope, (inbound_id, numbered) in offered.items():
        out.offers[scope] = KeepOffer(inbound_id, tuple(name for _, name in sorted(numbered)))
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
    # keep offers to write: contact_id, sender, channel, programs, inbound_id, offered_at,
    # expires_at (one per scope; it replaces the scope's earlier offer)
    offers: Sequence[tuple[int, str, str, list[str], int, datetime, datetime]] = ()
    # (contact_id, sender, channel) whose offer a consent change closed; never also in offers
    closed_offers: Sequence[tuple[int, str, str]] = ()


async def write_changes(conn: Connection, changes: Changes) -> dict[int, list[int]]:
    """Write a batch's changes in one statement; return outbox ids per inbound event.

    The head is moved first. Each part runs when the final UNION ALL first reads it, and a
    plain Append reads its branches in order, so no ledger row is inserted before the
    ``ledger_head`` row lock is held, and the lock is held to COMMIT. That keeps writers free
    of deadlocks: whoever waits for the head holds no ledger rows, so the holder, inserting
    the seqs that follow the head, never waits for a waiter. (With the head moved last, a
    writer chained onto a batch still committing inserted its seqs and then waited for the
    head, while a writer that had locked the head to read it, ``lock_head``, went on to
    insert the same seqs and waited for the first: two instances under load deadlocked.)
    When the head has moved, the inserts after it fail or are rolled back with the batch.
    """
    p = _Params()
    parts: list[str] = []
    reads: list[str] = []  # the branches of the final UNION ALL, in the order they run

    def add(name: str, body: str, read: str = "count(*), NULL::bigint", where: str = "") -> None:
        """A CTE ``name`` and the branch of the final UNION ALL that runs it."""
        parts.append(f"{name} AS ({body})")
        reads.append(f"SELECT '{name}', {read} FROM {name}{where}")

    if changes.head is not None:
        (old_seq, old_digest), (seq, digest) = changes.head
        # The row lock is taken here and held to COMMIT. The test is in SET, not WHERE: an
        # UPDATE that finds the row locked waits, then re-evaluates its expressions on the
        # version the other transaction committed (READ COMMITTED), whereas a WHERE that
        # fails on the version in its snapshot skips the row without waiting at all.
        same = f"seq = {p(old_seq, 'bigint')} AND hash = {p(old_digest, 'bytea')}"
        new_seq, new_hash = p(seq, "bigint"), p(digest, "bytea")
        add(
            "h",
            f"UPDATE ledger_head SET seq = CASE WHEN {same} THEN {new_seq} ELSE seq END,"
            f" hash = CASE WHEN {same} THEN {new_hash} ELSE hash END"
            f" RETURNING seq = {new_seq} AND hash = {new_hash} AS moved",
            where=" WHERE moved",
        )
    # Each part is one array of a row type (migration 007), not an array per column: asyncpg
    # checks every array element before encoding it, and a row is one element.
    if changes.ledger:
        rows = p(list(changes.ledger), "writer_ledger_row[]")
        add(
            "l",
            "INSERT INTO ledger (seq, contact_id, channel, sender, program, action,"
            " method, old_state, new_state, server_time, carrier_time, inbound_id, evidence,"
            " evidence_sha256, prev_hash, hash) SELECT u.seq, u.contact_id, u.channel,"
            " u.sender, u.program, u.action, u.method, u.old_state, u.new_state,"
            " u.server_time, u.carrier_time, u.inbound_id, u.evidence::jsonb,"
            f" u.evidence_sha256, u.prev_hash, u.hash FROM unnest({rows}) AS u RETURNING 1",
        )
    if changes.consent:
        rows = p(list(changes.consent), "writer_consent_row[]")
        add(
            "c",
            "INSERT INTO consent (contact_id, sender, channel, program, state, version,"
            f" updated_at, last_seq) SELECT * FROM unnest({rows})"
            " ON CONFLICT (contact_id, sender, program, channel) DO UPDATE SET"
            " state = EXCLUDED.state, version = EXCLUDED.version,"
            " updated_at = EXCLUDED.updated_at, last_seq = EXCLUDED.last_seq RETURNING 1",
        )
    if changes.cancel:
        # An opt-out cancels the person's unsent opt-in replies from earlier batches, queued
        # or leased for sending (``record`` found them; the writer cancels this batch's
        # own before they are written). The status test runs on each row's newest version,
        # so a reply the worker has marked 'sent' meanwhile stays 'sent'.
        add(
            "x",
            "UPDATE outbox SET status = 'cancelled', last_error = 'recipient opted out'"
            f" WHERE id = ANY({p(list(changes.cancel), 'bigint[]')})"
            " AND status IN ('queued', 'sending') RETURNING 1",
        )
    if changes.outbox:
        rows = p([tuple(row) for row in changes.outbox], "writer_outbox_row[]")
        add(
            "o",
            "INSERT INTO outbox (channel, sender, program, contact_id, recipient, kind,"
            " language, body, inbound_id, status, last_error)"
            " SELECT u.channel, u.sender, u.program, u.contact_id, u.recipient, u.kind,"
            " u.language, u.body, u.inbound_id, u.status,"
            " CASE WHEN u.status = 'cancelled' THEN 'recipient opted out' END"
            f" FROM unnest({rows}) AS u RETURNING id, inbound_id",
            read="id, inbound_id",
        )
    if changes.offers:
        rows = p([tuple(row) for row in changes.offers], "writer_keep_offer_row[]")
        add(
            "k",
            "INSERT INTO keep_offers (contact_id, sender, channel, programs, inbound_id,"
            f" offered_at, expires_at) SELECT * FROM unnest({rows})"
            " ON CONFLICT (contact_id, sender, channel) DO UPDATE SET"
            " programs = EXCLUDED.programs, inbound_id = EXCLUDED.inbound_id,"
            " offered_at = EXCLUDED.offered_at, expires_at = EXCLUDED.expires_at RETURNING 1",
        )
    if changes.closed_offers:
        # The scope's next consent change closes its offer (keywords/keep.py): a "1" after
        # a START or a second opt-out must not be read against an offer made before them.
        cids, senders, channels = (list(col) for col in zip(*changes.closed_offers, strict=True))
        add(
            "kx",
            "DELETE FROM keep_offers k USING unnest("
            f"{p(cids, 'bigint[]')}, {p(senders, 'text[]')}, {p(channels, 'text[]')})"
            " AS u(cid, s, ch) WHERE k.contact_id = u.cid AND k.sender = u.s"
            " AND k.channel = u.ch RETURNING 1",
        )
    if not parts:
        return {}
    tail = " UNION ALL ".join(reads)
    result = await conn.fetch(
        f"WITH {', '.join(parts)} SELECT * FROM ({tail}) AS r(part, n, inbound_id)", *p.values
    )
    out: dict[int, list[int]] = {}
    for r in result:
        if r["part"] == "o":
            out.setdefault(r["inbound_id"], []).append(r["n"])
        elif r["part"] == "h" and r["n"] != 1:
            raise HeadMoved("ledger_head is no longer the head the batch was chained from")
    return out
