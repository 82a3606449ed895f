"""Email reports (store layer): the mail we sent, as reports name it, and unverified reports.

The SMTP edge asks two things of PostgreSQL when a complaint or bounce arrives: did we send
the message a Message-ID or VERP address names (the outbox row: list and recipient), and,
when the report is not about our mail, to keep it for review without changing anything
(``unverified_reports``, migration 010). Neither is a consent change, so neither goes through
the writer. Database errors become ``TemporaryFailure``: the SMTP edge answers 451 and the
reporter retries, so no report is lost.

``unverified_reports.named`` and ``mail_from`` hold addresses: ``export_rows`` and
``erase_address`` are what the data-subject export and erasure (``privacy.py``) run for them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg

from gateway.store.db import connection

if TYPE_CHECKING:
    from gateway.store.db import Connection


@dataclass(frozen=True, slots=True)
class SentMail:
    """One email the outbox sent: the list it came from and whom it went to."""

    sender: str
    recipient: str
    provider_ref: str  # the Message-ID it left with


class EmailReports:
    """Reads the outbox for report ties and writes ``unverified_reports``."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def sent_mail(self, outbox_id: int) -> SentMail | None:
        """The email outbox row ``outbox_id`` once it was sent; None otherwise (or erased)."""
        async with connection(self._pool) as conn:
            row = await conn.fetchrow(
                "SELECT sender, recipient, provider_ref FROM outbox WHERE id = $1"
                " AND channel = 'email' AND provider_ref IS NOT NULL AND recipient <> 'erased'",
                outbox_id,
            )
        if row is None:
            return None
        return SentMail(row["sender"], row["recipient"], row["provider_ref"])

    async def record_unverified(
        self,
        *,
        report_key: str,
        kind: str,
        peer_ip: str,
        helo: str,
        mail_from: str,
        auth: Mapping[str, str],
        detail: Mapping[str, str],
        named: Sequence[str],
        reason: str,
    ) -> bool:
        """Keep one report for review; False if this report was kept already (redelivery)."""
        async with connection(self._pool) as conn:
            inserted = await conn.fetchval(
                "INSERT INTO unverified_reports (report_key, kind, peer_ip, helo, mail_from,"
                " auth, detail, named, reason) VALUES ($1, $2, $3, $4, $5, $6::jsonb,"
                " $7::jsonb, $8, $9) ON CONFLICT (report_key, kind) DO NOTHING RETURNING id",
                report_key,
                kind,
                peer_ip,
                helo,
                mail_from,
                json.dumps(dict(auth)),
                json.dumps(dict(detail)),
                list(named),
                reason,
            )
        return inserted is not None


async def export_rows(conn: Connection, address: str) -> list[dict[str, Any]]:
    """Unverified reports that name ``address`` or came from it (GDPR art. 15)."""
    rows = await conn.fetch(
        "SELECT id, report_key, kind, peer_ip, helo, mail_from, auth::text AS auth,"
        " detail::text AS detail, named, reason, received_at FROM unverified_reports"
        " WHERE named @> ARRAY[$1::text] OR mail_from = $1 ORDER BY id",
        address,
    )
    out: list[dict[str, Any]] = []
    for row in rows:
        item = dict(row)
        item["auth"] = json.loads(item["auth"])
        item["detail"] = json.loads(item["detail"])
        item["named"] = list(item["named"])
        item["received_at"] = item["received_at"].isoformat()
        out.append(item)
    return out


async def erase_address(conn: Connection, address: str) -> None:
    """Remove ``address`` from every unverified report (GDPR art. 17); the rest stays."""
    await conn.execute(
        "UPDATE unverified_reports SET named = array_remove(named, $1::text)"
        " WHERE named @> ARRAY[$1::text]",
        address,
    )
    await conn.execute(
        "UPDATE unverified_reports SET mail_from = 'erased' WHERE mail_from = $1", address
    )
