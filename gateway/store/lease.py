"""A writer task's connection (I/O layer): held across batches, and which failures a retry cures.

Each writer task keeps one pooled connection for as long as it works (a broken one is given
back and replaced): acquiring and releasing per batch costs the pool's reset query, a round
trip that every event in the batch would wait for. For the same reason the next
transaction's BEGIN always goes in the COMMIT's round trip (``COMMIT; BEGIN``, writer.py),
whether or not events are queued: a batch that started with a BEGIN of its own paid one more
round trip, and one more turn of the event loop, before its first statement (inbound SMTP at
50 connections, where many batches found the queue empty: 0.67-0.72 of aiosmtpd against
0.65-0.67, alternating runs). The transaction left open between batches has run no
statement, so it holds no snapshot, no transaction id and no lock: it holds back neither
VACUUM nor DDL. A server that ends idle transactions (``idle_in_transaction_session_timeout``)
closes the connection, and the next batch retries on a new one (``retry_reason``).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import asyncpg

from gateway.store import statements as sql

if TYPE_CHECKING:
    from asyncpg import Record
    from asyncpg.pool import PoolConnectionProxy

    from gateway.store.db import Connection


class Lease:
    """One writer task's pooled connection, held across batches until it breaks."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._conn: PoolConnectionProxy[Record] | None = None

    async def connection(self) -> Connection:
        """The held connection, or a new one from the pool."""
        if self._conn is None:
            self._conn = await self._pool.acquire()
        return self._conn

    async def rollback(self) -> None:
        """End the failed transaction; a connection that cannot is given back."""
        if self._conn is None:
            return
        try:
            await self._conn.execute("ROLLBACK")
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            await self.release()

    async def release(self) -> None:
        """Give the connection back (the pool closes it if it is broken).

        Between batches it sits in the transaction the last ``COMMIT; BEGIN`` opened, which
        has run nothing; it is ended here, so the pool's reset finds none (asyncpg logs
        "Resetting connection with an active transaction" at ERROR for one it finds).
        """
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            open_transaction = not conn.is_closed() and conn.is_in_transaction()
        except asyncpg.InterfaceError:
            open_transaction = False  # the server closed it: asyncpg gave it back already
        if open_transaction:
            try:
                await conn.execute("ROLLBACK")
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                conn.terminate()  # the pool replaces it
        # One the server closed is already back in the pool (asyncpg detaches it).
        with contextlib.suppress(asyncpg.InterfaceError):
            await self._pool.release(conn)

    async def discard(self) -> None:
        """Close a broken connection so the pool opens a new one in its place."""
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(asyncpg.InterfaceError):
                conn.terminate()
        await self.release()


def is_closed(conn: Connection) -> bool:
    """Closed, or a pool proxy asyncpg detached when the server closed it."""
    try:
        return conn.is_closed()
    except asyncpg.InterfaceError:
        return True


def retry_reason(exc: BaseException) -> str | None:
    """Why a new transaction may succeed (a lost race, a dead connection); None otherwise."""
    if isinstance(exc, sql.HeadMoved):
        return "head_moved"
    if isinstance(exc, asyncpg.UniqueViolationError) and exc.constraint_name == "ledger_pkey":
        return "head_moved"  # another instance had already appended the seq we chained
    if isinstance(exc, asyncpg.DeadlockDetectedError):
        return "deadlock"
    if isinstance(exc, asyncpg.SerializationError):
        return "serialization"
    if is_connection_error(exc) and not isinstance(exc, TimeoutError):
        # The connection died while idle: held since an earlier batch, or handed out by the
        # pool (a server restart, a failover, idle_in_transaction_session_timeout after
        # COMMIT; BEGIN). A retry on a new connection is safe, as a batch that did commit
        # comes back as duplicates; a database that is down fails the retries at once. A
        # timeout is a slow server, not a dead connection: no retry piles on.
        return "stale_connection"
    return None


def is_connection_error(exc: BaseException) -> bool:
    """The connection, not the batch, failed: no event is at fault."""
    return isinstance(
        exc,
        OSError
        | TimeoutError
        | asyncpg.InterfaceError
        | asyncpg.InternalClientError  # asyncpg's state after the server dropped it mid-use
        | asyncpg.PostgresConnectionError
        | asyncpg.CannotConnectNowError
        | asyncpg.AdminShutdownError,
    )
