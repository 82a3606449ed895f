"""Signed checkpoints of the ledger chain and the rows of a consent receipt (store layer).

(Not gateway/store/receipts.py, which holds SMPP delivery receipts.)

A checkpoint covers the events since the previous one. Before it is signed, those events
are re-derived from the previous checkpoint's head exactly as ``gateway audit verify`` does
(gap-free seq, each prev_hash, each hash, each evidence digest): a chain that no longer
verifies is never signed, so a signature vouches for the rows as they were written
(docs/DESIGN.md, invariant 4). The statement names the range, the head hash, the RFC 6962
Merkle root over the covered hashes and the digest of the previous statement, and is signed
with Ed25519 (gateway/audit/signing.py). Instances serialise on an advisory lock, so two
never sign overlapping ranges.

A receipt carries one person's events, each with its audit path to the root of the
checkpoint that covers it: checkable offline (gateway/audit/receipt_verify.py,
docs/receipts.md) without anyone else's events.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from gateway.audit import merkle
from gateway.audit.signing import CheckpointSigner
from gateway.store.ledger import (
    GENESIS,
    event_from_row,
    event_hash,
    evidence_digest,
    evidence_json,
)

STATEMENT_FORMAT = "ledger-checkpoint/1"
MAX_EVENTS = 100_000  # per checkpoint: a receipt's proof reads at most this many hashes
_LOCK = 0x63700002  # advisory lock key of checkpointing; no other part uses it
_FETCH = 5_000


class ChainBroken(Exception):
    """The events since the last checkpoint do not verify: nothing was signed."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems[:5]))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One signed checkpoint."""

    id: int
    first_seq: int
    last_seq: int
    head_hash: bytes
    root: bytes
    statement: str
    signature: bytes
    key_id: str
    public_key: bytes

    def as_json(self) -> dict[str, Any]:
        """As a receipt carries it."""
        return {
            "id": self.id,
            "statement": self.statement,
            "signature": self.signature.hex(),
            "public_key": self.public_key.hex(),
            "key_id": self.key_id,
        }


def _checkpoint(row: asyncpg.Record) -> Checkpoint:
    return Checkpoint(
        id=row["id"],
        first_seq=row["first_seq"],
        last_seq=row["last_seq"],
        head_hash=bytes(row["head_hash"]),
        root=bytes(row["root"]),
        statement=row["statement"],
        signature=bytes(row["signature"]),
        key_id=row["key_id"],
        public_key=bytes(row["public_key"]),
    )


def _problems_of(row: asyncpg.Record, expected_seq: int, prev: bytes) -> list[str]:
    """What is wrong with one ledger row, as ``gateway audit verify`` words it."""
    seq = row["seq"]
    found = []
    if seq != expected_seq:
        found.append(f"seq {seq}: expected seq {expected_seq} (rows missing)")
    if bytes(row["prev_hash"]) != prev:
        found.append(f"seq {seq}: prev_hash does not link to the previous event")
    if event_hash(bytes(row["prev_hash"]), event_from_row(row)) != bytes(row["hash"]):
        found.append(f"seq {seq}: contents do not match the stored hash (altered)")
    evidence = row["evidence"]
    if evidence is not None and (
        evidence_digest(evidence_json(json.loads(evidence))) != bytes(row["evidence_sha256"])
    ):
        found.append(f"seq {seq}: evidence does not match its digest (altered)")
    return found


class ReceiptChain:
    """Checkpoints, and the rows a receipt is built from."""

    def __init__(self, pool: asyncpg.Pool, signer: CheckpointSigner) -> None:
        self._pool = pool
        self._signer = signer

    @property
    def public_key(self) -> bytes:
        """The key checkpoints are signed with now."""
        return self._signer.public_key

    async def checkpoint_once(
        self, *, max_events: int = MAX_EVENTS, now: Callable[[], datetime] | None = None
    ) -> Checkpoint | None:
        """Sign the events since the last checkpoint (at most ``max_events``); None when
        there are none; ``ChainBroken`` when they do not verify."""
        clock = now or (lambda: datetime.now(UTC))
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
            last = await conn.fetchrow(
                "SELECT * FROM ledger_checkpoints ORDER BY last_seq DESC LIMIT 1"
            )
            head_seq = await conn.fetchval("SELECT seq FROM ledger_head")
            done = 0 if last is None else last["last_seq"]
            if head_seq is None or head_seq <= done:
                return None
            target = min(head_seq, done + max_events)
            prev = GENESIS if last is None else bytes(last["head_hash"])
            hashes: list[bytes] = []
            problems: list[str] = []
            expected = done + 1
            cursor = conn.cursor(
                "SELECT seq, contact_id, channel, sender, program, action, method, old_state,"
                " new_state, server_time, carrier_time, inbound_id, evidence::text AS evidence,"
                " evidence_sha256, prev_hash, hash FROM ledger WHERE seq > $1 AND seq <= $2"
                " ORDER BY seq",
                done,
                target,
                prefetch=_FETCH,
            )
            async for row in cursor:
                problems += _problems_of(row, expected, prev)
                prev = bytes(row["hash"])
                hashes.append(prev)
                expected = row["seq"] + 1
            if expected != target + 1:
                problems.append(f"seq {expected}: expected seq {expected} (rows missing)")
            if problems:
                raise ChainBroken(problems)
            statement = json.dumps(
                {
                    "format": STATEMENT_FORMAT,
                    "first_seq": done + 1,
                    "last_seq": target,
                    "size": len(hashes),
                    "head": prev.hex(),
                    "root": merkle.root(hashes).hex(),
                    "prev": None
                    if last is None
                    else hashlib.sha256(last["statement"].encode()).hexdigest(),
                    "signed_at": clock().isoformat(),
                    "key_id": self._signer.key_id,
                },
                sort_keys=True,
                separators=(",", ":"),
            )
            inserted = await conn.fetchrow(
                "INSERT INTO ledger_checkpoints (first_seq, last_seq, head_hash, root,"
                " statement, signature, key_id, public_key)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
                done + 1,
                target,
                prev,
                merkle.root(hashes),
                statement,
                self._signer.sign(statement.encode()),
                self._signer.key_id,
                self._signer.public_key,
            )
        assert inserted is not None  # INSERT ... RETURNING returns its row
        return _checkpoint(inserted)

    async def checkpoint_all(self, *, max_events: int = MAX_EVENTS) -> list[Checkpoint]:
        """Checkpoint until the head is covered; the checkpoints made."""
        made: list[Checkpoint] = []
        while (cp := await self.checkpoint_once(max_events=max_events)) is not None:
            made.append(cp)
        return made

    async def contact_id(self, channel: str, address: str) -> int | None:
        """The contact of an address (the contact key, gateway/addresses.py)."""
        async with self._pool.acquire() as conn:
            value = await conn.fetchval(
                "SELECT id FROM contacts WHERE channel = $1 AND address = $2", channel, address
            )
        return None if value is None else int(value)

    async def receipt_rows(self, contact_id: int) -> dict[str, Any] | None:
        """Everything a receipt of ``contact_id`` shows, with proofs; None if unknown.

        Read in one snapshot after checkpointing up to the head, so every event read has a
        checkpoint (unless the chain no longer verifies: then the events past the last
        checkpoint come without a proof, and the receipt fails to verify, as it should).
        """
        with contextlib.suppress(ChainBroken):  # the rows as they are; their check fails
            await self.checkpoint_all()
        async with (
            self._pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            contact = await conn.fetchrow(
                "SELECT id, channel, address, created_at FROM contacts WHERE id = $1", contact_id
            )
            if contact is None:
                return None
            ledger = await conn.fetch(
                "SELECT seq, contact_id, channel, sender, program, action, method, old_state,"
                " new_state, server_time, carrier_time, inbound_id, evidence::text AS evidence,"
                " evidence_sha256, prev_hash, hash FROM ledger WHERE contact_id = $1 ORDER BY seq",
                contact_id,
            )
            consent = await conn.fetch(
                "SELECT sender, program, channel, state, updated_at, last_seq FROM consent"
                " WHERE contact_id = $1 ORDER BY sender, program",
                contact_id,
            )
            inbound = await conn.fetch(
                "SELECT id, dedupe_key, method, received_at, carrier_time, intent, match,"
                " needs_review, body FROM inbound_events WHERE contact_id = $1 ORDER BY id",
                contact_id,
            )
            reviews = await conn.fetch(
                "SELECT r.inbound_id, r.decision, r.note, r.actor, r.ledger_seqs, r.head_seq,"
                " r.head_hash, r.decided_at FROM consent_reviews r JOIN inbound_events i"
                " ON i.id = r.inbound_id WHERE i.contact_id = $1 ORDER BY r.id",
                contact_id,
            )
            checkpoints = await conn.fetch(
                "SELECT * FROM ledger_checkpoints WHERE id IN (SELECT c.id FROM"
                " ledger_checkpoints c JOIN unnest($1::bigint[]) AS s(seq)"
                " ON s.seq BETWEEN c.first_seq AND c.last_seq) ORDER BY id",
                [r["seq"] for r in ledger],
            )
            proofs: dict[int, tuple[int, int, list[bytes]]] = {}
            for row in checkpoints:
                cp = _checkpoint(row)
                leaves = [
                    bytes(r["hash"])
                    for r in await conn.fetch(
                        "SELECT hash FROM ledger WHERE seq BETWEEN $1 AND $2 ORDER BY seq",
                        cp.first_seq,
                        cp.last_seq,
                    )
                ]
                tree = merkle.levels(leaves)
                for r in ledger:
                    index = r["seq"] - cp.first_seq
                    if cp.first_seq <= r["seq"] <= cp.last_seq and index < len(leaves):
                        proofs[r["seq"]] = (cp.id, index, merkle.audit_path(tree, index))
        return {
            "contact": dict(contact),
            "ledger": [dict(r) for r in ledger],
            "consent": [dict(r) for r in consent],
            "inbound": [dict(r) for r in inbound],
            "reviews": [dict(r) for r in reviews],
            "checkpoints": [_checkpoint(r).as_json() for r in checkpoints],
            "proofs": proofs,
        }
