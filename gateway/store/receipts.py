"""Delivery receipts store (store layer): record what an SMSC reports about a sent reply.

Receipts are not consent: they do not go through the pipeline or the ledger. A receipt is
matched to the outbox row whose ``provider_ref`` lists ``<smsc>/<message_id>`` and recorded
once (a redelivered receipt is a no-op); the row's ``delivery_state`` shows the latest.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg


class ReceiptStore:
    """Writes delivery receipts; one short transaction each."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def record(
        self,
        smsc: str,
        message_id: str,
        state: str,
        error: str,
        done_at: datetime | None,
        *,
        require_match: bool,
    ) -> int | None:
        """Record a receipt; return the outbox id it reports on.

        With ``require_match`` an unmatched receipt is not recorded and None is returned, so
        the caller can have the SMSC redeliver it once the submit's id has been recorded.
        """
        ref = f"{smsc}/{message_id}"
        async with self._pool.acquire() as conn, conn.transaction():
            outbox_id: int | None = await conn.fetchval(
                "SELECT id FROM outbox WHERE string_to_array(provider_ref, ' ') @> ARRAY[$1]"
                " ORDER BY id DESC LIMIT 1",
                ref,
            )
            if outbox_id is None and require_match:
                return None
            await conn.execute(
                "INSERT INTO delivery_receipts (smsc, message_id, outbox_id, state, error,"
                " done_at) VALUES ($1, $2, $3, $4, $5, $6)"
                " ON CONFLICT (smsc, message_id, state) DO NOTHING",
                smsc, message_id, outbox_id, state, error, done_at,
            )  # fmt: skip
            if outbox_id is not None:
                await conn.execute(
                    "UPDATE outbox SET delivery_state = $2, delivered_at = coalesce($3, now())"
                    " WHERE id = $1",
                    outbox_id,
                    state,
                    done_at,
                )
            return outbox_id
