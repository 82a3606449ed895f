"""Earlier sends to a person, for the caps of the send rules (store layer).

Two sources, one answer: the gated sends of this gateway (``outbox`` rows of kind ``send``:
queued or leaving at their ``next_attempt_at``, sent at their ``sent_at``, so a deferred
send already counts toward the cap it will meet when it leaves), and the sends outside
senders report (``send_reports``, POST /v1/sends). Cancelled and failed rows never reached
anyone and do not count. One round trip for many recipients; addresses are contact keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from gateway.errors import TemporaryFailure
from gateway.store.db import DB_ERRORS


@dataclass(frozen=True, slots=True)
class PastSend:
    """One earlier send to the person: when, from which sender and program."""

    at: datetime
    sender: str
    program: str
    reported: bool  # by an outside sender (its own clock); else an outbox row (real time)


async def sends_since(
    pool: asyncpg.Pool,
    channel: str,
    addresses: Sequence[str],
    since: datetime,
    outbox_since: datetime | None = None,
) -> dict[str, list[PastSend]]:
    """address -> its sends on ``channel`` at or after ``since`` (absent: none), oldest first.

    ``outbox_since`` bounds the outbox rows instead when the caller's clock is not the
    database's (gateway/clock.py: the test clock); their times come back in real time.
    """
    try:
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT c.address, coalesce(o.sent_at, o.next_attempt_at) AS at, o.sender,"
                "       o.program, false AS reported"
                "  FROM unnest($1::text[]) AS a(address)"
                "  JOIN contacts c ON c.channel = $2 AND c.address = a.address"
                "  JOIN outbox o ON o.contact_id = c.id AND o.kind = 'send'"
                "   AND o.status IN ('queued', 'sending', 'sent') AND o.channel = $2"
                " WHERE coalesce(o.sent_at, o.next_attempt_at) >= $4"
                " UNION ALL"
                " SELECT r.recipient, r.sent_at, r.sender, r.program, true"
                "  FROM send_reports r"
                " WHERE r.channel = $2 AND r.recipient = ANY($1::text[]) AND r.sent_at >= $3"
                " ORDER BY 2",
                list(addresses),
                channel,
                since,
                since if outbox_since is None else outbox_since,
            )
    except DB_ERRORS as exc:
        raise TemporaryFailure("send history unavailable") from exc
    found: dict[str, list[PastSend]] = {}
    for r in rows:
        found.setdefault(r["address"], []).append(
            PastSend(r["at"], r["sender"], r["program"] or "", r["reported"])
        )
    return found
