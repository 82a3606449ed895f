"""The review queue (store layer): texts flagged ``needs_review`` and an operator's finding.

A leading-word or plain-language opt-out is acted on at once and flagged (keywords/classify.py):
a person said something like "stop please" and must not wait for a human. The operator then
confirms the reading or reverses it, with a note. A finding never changes consent: a reversed
opt-out stays an opt-out until the person opts in themselves (FCC 24-24: revocation by any
reasonable means must be honoured; GDPR art. 7(3): withdrawing is as easy as giving), so the
review only clears the flag and records what the operator found.

Each finding is one ``consent_reviews`` row (append-only, one per flagged text) naming the
ledger events the text caused and the chain's head at that moment, plus one ``admin_audit``
row, in one transaction (GDPR art. 5(2): the controller shows what it did).
"""

from __future__ import annotations

from typing import Any

import asyncpg

from gateway.errors import BadInput, TemporaryFailure
from gateway.store.audit_log import write_audit
from gateway.store.db import DB_ERRORS

DECISIONS = {"confirm": "confirmed", "reverse": "reversed"}


class ReviewQueue:
    """Lists flagged texts and records findings."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def flagged(self, *, status: str, limit: int, after: int = 0) -> list[dict[str, Any]]:
        """Flagged texts, oldest first: ``open``, ``decided`` or ``all``, ids above ``after``."""
        try:
            async with self._pool.acquire() as conn:
                rows = await conn.fetch(
                    "SELECT i.id AS inbound_id, i.contact_id, c.channel, c.address, i.sender,"
                    " i.method, i.received_at, i.intent, i.match, i.body AS text,"
                    " ARRAY(SELECT seq FROM ledger WHERE inbound_id = i.id ORDER BY seq)"
                    " AS ledger_seqs, r.decision, r.note, r.actor, r.decided_at"
                    " FROM inbound_events i JOIN contacts c ON c.id = i.contact_id"
                    " LEFT JOIN consent_reviews r ON r.inbound_id = i.id"
                    " WHERE i.needs_review AND i.id > $1"
                    " AND ($3::text = 'all' OR ($3::text = 'open') = (r.id IS NULL))"
                    " ORDER BY i.id LIMIT $2",
                    after,
                    limit,
                    status,
                )
        except DB_ERRORS as exc:
            raise TemporaryFailure("the review queue is unavailable") from exc
        return [
            {
                **dict(r),
                "ledger_seqs": list(r["ledger_seqs"]),
                "received_at": r["received_at"].isoformat(),
                "decided_at": None if r["decided_at"] is None else r["decided_at"].isoformat(),
            }
            for r in rows
        ]

    async def decide(self, inbound_id: int, action: str, note: str, actor: str) -> dict[str, Any]:
        """Record ``confirm`` or ``reverse`` for one flagged text; ``BadInput`` if it is not
        flagged or already decided."""
        decision = DECISIONS[action]
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                flagged = await conn.fetchval(
                    "SELECT needs_review FROM inbound_events WHERE id = $1 FOR UPDATE",
                    inbound_id,
                )
                if not flagged:
                    raise BadInput("no text flagged for review has that id", code="not_flagged")
                head = await conn.fetchrow("SELECT seq, hash FROM ledger_head")
                assert head is not None  # migration 001 inserts the one row
                row = await conn.fetchrow(
                    "INSERT INTO consent_reviews (inbound_id, decision, note, actor, ledger_seqs,"
                    " head_seq, head_hash) SELECT $1, $2, $3, $4,"
                    " ARRAY(SELECT seq FROM ledger WHERE inbound_id = $1 ORDER BY seq), $5, $6"
                    " ON CONFLICT (inbound_id) DO NOTHING RETURNING id, ledger_seqs, decided_at",
                    inbound_id,
                    decision,
                    note,
                    actor,
                    head["seq"],
                    bytes(head["hash"]),
                )
                if row is None:
                    raise BadInput("that text was reviewed already", code="already_reviewed")
                await write_audit(
                    conn,
                    actor,
                    f"review.{action}",
                    f"inbound:{inbound_id}",
                    {"review_id": row["id"], "ledger_seqs": list(row["ledger_seqs"])},
                )
        except DB_ERRORS as exc:
            raise TemporaryFailure("the review queue is unavailable") from exc
        return {
            "review_id": row["id"],
            "inbound_id": inbound_id,
            "decision": decision,
            "ledger_seqs": list(row["ledger_seqs"]),
            "head_seq": head["seq"],
            "decided_at": row["decided_at"].isoformat(),
            "consent_changed": False,
        }
