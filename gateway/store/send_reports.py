"""Sends reported by outside senders, and the batch gate's answers they can join (store layer).

``gate_decisions`` keeps one row per batch gate request: its scope and one byte per
recipient, in request order, saying what the gate answered (``ANSWER_CODES``). The batch
answer carries the row's id, so the sender can report each send with (decision id, index)
and the audit report can show the answer that recipient was given, without the gate
storing a million addresses (the bytes compress to almost nothing when answers repeat).

``send_reports`` is idempotent by (sender, message_id): a report sent again is recorded
once; the same key with different content is a conflict, reported, never overwritten.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from gateway.errors import TemporaryFailure
from gateway.store.db import DB_ERRORS

# The gate's reasons (gateway/gate.py GateReason values) as stored, one byte each. Never
# renumber: stored answers are read with this table.
ANSWER_CODES: dict[str, int] = {
    "opted_in": 1,
    "no_consent": 2,
    "pending_confirmation": 3,
    "opted_out": 4,
    "invalid_address": 5,
    "suppressed": 6,
    "deferred": 7,
    "refused_by_rule": 8,
}
ANSWER_REASONS: dict[int, str] = {code: reason for reason, code in ANSWER_CODES.items()}


def answer_at(answers: bytes | None, index: int) -> str | None:
    """The reason stored for recipient ``index`` of a decision; None if not recorded."""
    if answers is None:
        return None
    raw = zlib.decompress(answers)
    if not 0 <= index < len(raw):
        return None
    return ANSWER_REASONS.get(raw[index])


@dataclass(frozen=True, slots=True)
class SendReport:
    """One send an outside sender made, as reported."""

    sender: str
    message_id: str
    channel: str
    program: str
    recipient: str  # the contact key
    sent_at: datetime
    decision_id: str | None = None
    decision_index: int | None = None


class SendReports:
    """Gate decisions and send reports in PostgreSQL."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def open_decision(
        self,
        decision_id: str,
        scope: tuple[str, str, str],
        recipients: int,
        api_key: str,
        answers: bytes | None,
    ) -> None:
        """Record a batch gate request; ``answers`` (raw codes) now if it is complete."""
        sender, program, channel = scope
        async with self._pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO gate_decisions (id, sender, program, channel, recipients, answers,"
                " api_key) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                decision_id,
                sender,
                program,
                channel,
                recipients,
                None if answers is None else zlib.compress(answers, 1),
                api_key,
            )

    async def close_decision(self, decision_id: str, answers: bytes) -> None:
        """Store the whole answer of a decision opened before its stream began."""
        async with self._pool.acquire() as conn:
            await conn.execute(
                "UPDATE gate_decisions SET answers = $2 WHERE id = $1 AND answers IS NULL",
                decision_id,
                zlib.compress(answers, 1),
            )

    async def record(self, reports: Sequence[SendReport], api_key: str) -> list[str]:
        """Store ``reports``; per report ``recorded``, ``duplicate`` or ``conflict``."""
        if not reports:
            return []
        columns = (
            [r.sender for r in reports],
            [r.message_id for r in reports],
            [r.channel for r in reports],
            [r.program for r in reports],
            [r.recipient for r in reports],
            [r.sent_at for r in reports],
            [r.decision_id for r in reports],
            [r.decision_index for r in reports],
        )
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                inserted = await conn.fetch(
                    "INSERT INTO send_reports (sender, message_id, channel, program, recipient,"
                    " sent_at, decision_id, decision_index, api_key)"
                    " SELECT u.*, $9 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],"
                    " $5::text[], $6::timestamptz[], $7::text[], $8::int[]) AS u"
                    " ON CONFLICT (sender, message_id) DO NOTHING RETURNING id, sender, message_id",
                    *columns,
                    api_key,
                )
                stored = await conn.fetch(
                    "SELECT s.id, s.sender, s.message_id, s.channel, s.program, s.recipient,"
                    " s.sent_at, s.decision_id, s.decision_index FROM send_reports s"
                    " JOIN unnest($1::text[], $2::text[]) AS u(sender, message_id)"
                    " ON s.sender = u.sender AND s.message_id = u.message_id",
                    columns[0],
                    columns[1],
                )
        except DB_ERRORS as exc:
            raise TemporaryFailure("the report store is unavailable") from exc
        new_ids = {r["id"] for r in inserted}
        by_key = {(r["sender"], r["message_id"]): r for r in stored}
        out: list[str] = []
        seen: set[tuple[str, str]] = set()
        for report in reports:
            key = (report.sender, report.message_id)
            row = by_key[key]
            same = (
                row["channel"], row["program"], row["recipient"], row["sent_at"],
                row["decision_id"], row["decision_index"],
            ) == (
                report.channel, report.program, report.recipient, report.sent_at,
                report.decision_id, report.decision_index,
            )  # fmt: skip
            if row["id"] in new_ids and key not in seen and same:
                out.append("recorded")
            else:
                out.append("duplicate" if same else "conflict")
            seen.add(key)
        return out
