"""Gated sends into the ``outbox`` table: ``POST /v1/send`` and double opt-in link mail.

A row is queued only while, under the contact's row lock (``FOR SHARE``), the consent allows
it: an opt-out for this person waits for this transaction, and the writer then cancels the
queued row (gateway/store/plan.py), so no send follows an opt-out (docs/DESIGN.md,
invariant 2). The outbox worker leases and settles the rows (gateway/store/outbox_rows.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

import asyncpg

from gateway.errors import TemporaryFailure
from gateway.store.db import DB_ERRORS
from gateway.store.suppression import Suppression
from keywords.model import ConsentState

if TYPE_CHECKING:
    from gateway.store.db import Connection

_REFUSED: Mapping[str, str] = {
    "none": "no_consent",
    "pending": "pending_confirmation",
    "opted_out": "opted_out",
}


async def contact_id(conn: Connection, channel: str, address: str, lock: str) -> int | None:
    """The contact's id, its row locked ``FOR SHARE`` or ``FOR UPDATE`` (None: no contact)."""
    assert lock in ("SHARE", "UPDATE")  # a fixed word, never input
    value = await conn.fetchval(
        f"SELECT id FROM contacts WHERE channel = $1 AND address = $2 FOR {lock}",  # noqa: S608
        channel,
        address,
    )
    return None if value is None else int(value)


class SendQueue:
    """Queues a message for one person when, under the contact's lock, consent allows it."""

    def __init__(self, pool: asyncpg.Pool, suppression: Suppression) -> None:
        self._pool = pool
        self.suppression = suppression

    async def queue_send(
        self,
        channel: str,
        sender: str,
        program: str,
        address: str,
        body: str,
        *,
        recipient: str | None = None,
        not_before: datetime | None = None,
    ) -> int | str:
        """Queue a message if, under the contact's lock, its consent is ``opted_in``.

        ``address`` is the contact key, ``recipient`` the address to send to (the key when
        None). Returns the outbox id, or the refusal reason (a ``GateReason`` value).
        ``not_before`` (real time) defers the send: the outbox leaves it alone until then,
        and an opt-out meanwhile cancels it like any queued send (docs/rules.md).

        The contact row is locked ``FOR SHARE``: an opt-out for this person waits for this
        transaction and then cancels the queued row (gateway/store/plan.py), so no send
        follows an opt-out.
        """
        if self.suppression.contains(channel, address, recipient):
            return "suppressed"
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                cid = await contact_id(conn, channel, address, "SHARE")
                state = None
                if cid is not None:
                    state = await conn.fetchval(
                        "SELECT state FROM consent WHERE contact_id = $1 AND sender = $2"
                        " AND program = $3 AND channel = $4",
                        cid,
                        sender,
                        program,
                        channel,
                    )
                if state != ConsentState.OPTED_IN.value:
                    return _REFUSED.get(state or "none", "no_consent")
                outbox_id: int = await conn.fetchval(
                    "INSERT INTO outbox (channel, sender, program, contact_id, recipient, kind,"
                    " language, body, next_attempt_at)"
                    " VALUES ($1, $2, $3, $4, $5, 'send', '', $6, coalesce($7, now()))"
                    " RETURNING id",
                    channel,
                    sender,
                    program,
                    cid,
                    recipient or address,
                    body,
                    not_before,
                )
        except DB_ERRORS as exc:
            raise TemporaryFailure("consent store unavailable") from exc
        return outbox_id

    async def queue_notice(
        self,
        channel: str,
        sender: str,
        program: str,
        address: str,
        body: str,
        *,
        recipient: str | None = None,
    ) -> int | None:
        """Queue a double opt-in link mail (kind ``pending``: an opt-out cancels it).

        Only while the consent is still ``pending``, checked under the contact's lock
        (``FOR SHARE``, as ``queue_send``): an opt-out that committed after the sign-up
        leaves nothing to queue (None), and one that comes later waits for this transaction
        and then cancels the row (gateway/store/plan.py).
        """
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                outbox_id: int | None = await conn.fetchval(
                    "WITH c AS (SELECT id FROM contacts WHERE channel = $1 AND address = $4"
                    " FOR SHARE)"
                    " INSERT INTO outbox (channel, sender, program, contact_id, recipient, kind,"
                    " language, body) SELECT $1, $2, $3, c.id, $6, 'pending', '', $5 FROM c"
                    " JOIN consent s ON s.contact_id = c.id AND s.sender = $2"
                    " AND s.program = $3 AND s.channel = $1 WHERE s.state = 'pending'"
                    " RETURNING id",
                    channel,
                    sender,
                    program,
                    address,
                    body,
                    recipient or address,
                )
        except DB_ERRORS as exc:
            raise TemporaryFailure("consent store unavailable") from exc
        return outbox_id
