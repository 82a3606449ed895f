"""Parts of concatenated SMS (store layer): each part committed on arrival, sets claimed once.

The SMPP edge acknowledges a part only after ``add`` committed it, so an SMSC with a window
of 1 (it sends the next part only once this one is answered) is never stalled, and a part
acknowledged is never lost to a crash. The sets live in ``sms_part_sets`` and their parts in
``sms_parts`` (migration 009); every decision about a set (is it complete, who hands it to
the pipeline, is it due at the timeout) is taken in PostgreSQL under the set's row lock, so
parts of one text may arrive on different binds or instances.

Database errors become ``TemporaryFailure``: the edge answers ESME_RX_T_APPN and the SMSC
delivers the part again, which ``add`` takes as the redelivery it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import asyncpg

from gateway.messages import SmsPartSet
from gateway.store.db import connection


class SmsPartStore:
    """Reads and writes ``sms_part_sets`` and ``sms_parts``; one short transaction a call."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def add(
        self,
        smsc: str,
        source: str,
        destination: str,
        ref: int,
        total: int,
        seq: int,
        data_coding: int,
        body: bytes,
    ) -> SmsPartSet | None:
        """Commit one part (a redelivered one changes nothing); one round trip.

        Returns the set to hand to the pipeline now, claimed for it: this part completed it,
        or it is a copy of a part whose set's hand-off has not been answered yet. Otherwise
        None: the part is committed and the set waits for the rest.
        """
        async with connection(self._pool) as conn:
            row = await conn.fetchrow(
                "SELECT * FROM sms_part_add($1, $2, $3, $4, $5, $6, $7, $8)",
                smsc, source, destination, ref, total, seq, data_coding, body,
            )  # fmt: skip
        return None if row is None else _part_set(row)

    async def claim_due(self, timeout_seconds: float, limit: int) -> list[SmsPartSet]:
        """Claim up to ``limit`` sets due at the reassembly timeout (see migration 009).

        Sets another instance is claiming are skipped, not waited for.
        """
        async with connection(self._pool) as conn:
            rows = await conn.fetch(
                "SELECT * FROM sms_part_claim_due($1, $2)",
                timedelta(seconds=timeout_seconds),
                limit,
            )
        return [_part_set(r) for r in rows]

    async def handed_off(self, part_set: SmsPartSet) -> None:
        """Record that the pipeline answered for ``part_set`` (committed, or refused for good).

        Only the claim it names: a set claimed again since (a part arrived after a hand-off
        at the timeout) stays due.
        """
        async with connection(self._pool) as conn:
            await conn.execute(
                "UPDATE sms_part_sets SET handed_off = now()"
                " WHERE id = $1 AND cardinality(claimed) = $2 AND handed_off IS NULL",
                part_set.id,
                len(part_set.seqs),
            )

    async def purge(self, keep_seconds: float) -> int:
        """Forget sets handed off more than ``keep_seconds`` ago with nothing left to do."""
        async with connection(self._pool) as conn:
            status = await conn.execute(
                "DELETE FROM sms_part_sets WHERE handed_off < now() - $1::interval"
                " AND cardinality(seqs) = cardinality(claimed)",
                timedelta(seconds=keep_seconds),
            )
        return int(status.split()[-1])


def _part_set(row: asyncpg.Record) -> SmsPartSet:
    seqs: Sequence[int] = row["seqs"]
    return SmsPartSet(
        id=row["id"],
        smsc=row["smsc"],
        source=row["source"],
        destination=row["destination"],
        ref=row["ref"],
        total=row["total"],
        seqs=tuple(seqs),
        codings=tuple(row["codings"]),
        bodies=tuple(row["bodies"]),
        received_at=row["received_at"],
    )
