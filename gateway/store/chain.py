"""Chaining a batch's ledger rows onto the head (I/O layer): seqs, hashes, and the head they leave.

Ledger rows get gap-free ``seq`` and chained hashes (ledger.py; docs/DESIGN.md, invariant 4)
from the head this process last wrote or, when it does not know it, from ``ledger_head``
read under its row lock (``sql.lock_head``). ``write_changes`` moves the head on only if it
is still that one, under the row lock held to COMMIT, else the batch is chained again from
the locked head (``HeadMoved``; the writer retries).

Knowing the head saves the round trip that locks and reads it, and keeps the row locked only
from the statement that writes it to COMMIT: the second writer task chains its batch onto
the first's while the first commits, and its head update waits inside Postgres for that
commit. Another instance appending meanwhile costs one retry, never a wrong chain.

A retry redoes the whole batch (contact locks, inbound rows, the plan), so while another
instance is appending, remembering is the wrong bet: with two workers on one host a flood of
30,000 texts had 143 transactions rolled back against 806 committed (2026-12-07,
docs/benchmarks.md). After a batch finds the
head moved (``moved``), this process reads the head under its lock for the next
``CONTENDED_SECONDS``, one round trip per batch instead of a redone batch. Each head it
reads that is not the one it last wrote starts the window again, so it trusts its memory
once nobody else has moved the head for that long.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.store import statements as sql
from gateway.store.ledger import LedgerEvent, event_hash
from gateway.store.plan import LedgerRow

if TYPE_CHECKING:
    from gateway.store.db import Connection

Head = tuple[int, bytes]  # the chain's last (seq, hash)

CONTENDED_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class _Link:
    """A batch's place in the chain: the head it leaves, and when its head update has run."""

    head: Head
    written: asyncio.Future[None]


@dataclass(frozen=True, slots=True)
class Chained:
    """A batch's ledger rows with their seqs and hashes, ready for ``sql.Changes``."""

    records: Sequence[tuple[object, ...]]  # the ``writer_ledger_row`` values
    seqs: Sequence[int]  # in the order of the rows
    heads: tuple[Head, Head] | None  # (chained from, new); None when there are no rows


_NOTHING = Chained((), (), None)


def link(head: Head, rows: Sequence[LedgerRow]) -> tuple[list[tuple[object, ...]], list[int], Head]:
    """Give each row the next seq and its link in the hash chain (ledger.py)."""
    seq, prev = head
    records: list[tuple[object, ...]] = []
    seqs: list[int] = []
    for r in rows:
        seq += 1
        chained = LedgerEvent(
            seq, r.contact_id, r.channel, r.sender, r.program, r.action, r.method,
            r.old_state, r.new_state, r.server_time, r.carrier_time, r.inbound_id,
            r.evidence_sha256,
        )  # fmt: skip
        digest = event_hash(prev, chained)
        records.append(
            (seq, r.contact_id, r.channel, r.sender, r.program, r.action, r.method,
             r.old_state, r.new_state, r.server_time, r.carrier_time, r.inbound_id,
             r.evidence, r.evidence_sha256, prev, digest)
        )  # fmt: skip
        seqs.append(seq)
        prev = digest
    return records, seqs, (seq, prev)


class Chain:
    """The last batch chained here (committed or in flight), shared by the writer tasks."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._last: _Link | None = None  # None: read the head under its lock
        self._clock = clock
        self._contended_until = float("-inf")

    def forget(self) -> None:
        """A batch failed: whatever it chained onto, or others onto it, may not commit."""
        self._last = None

    def moved(self) -> None:
        """Another instance moved the head under a batch: read it under its lock for a while."""
        self._last = None
        self._contended_until = self._clock() + CONTENDED_SECONDS

    def contended(self) -> bool:
        """True while this process reads the head under its lock instead of remembering it."""
        return self._clock() < self._contended_until

    @contextlib.asynccontextmanager
    async def append(self, conn: Connection, rows: Sequence[LedgerRow]) -> AsyncIterator[Chained]:
        """Chain ``rows``; the block writes them (``sql.write_changes``), and only then may
        the next batch's head update run."""
        if not rows:
            yield _NOTHING
            return
        contended = self.contended()
        before = None if contended else self._last
        if before is not None:
            start = before.head
        else:
            start = await sql.lock_head(conn)
            known = self._last
            if contended and known is not None and known.head != start:
                # Another instance appended since this process did: stay contended, rather
                # than learn it again from a redone batch when the window ends.
                self._contended_until = self._clock() + CONTENDED_SECONDS
        records, seqs, head = link(start, rows)
        # The next batch chains from here. (Between reading ``_last`` and this line the
        # only await is ``lock_head``, and a batch that holds the head lock knows the
        # committed head, whatever another batch left in ``_last`` meanwhile.)
        mine = self._last = _Link(head, asyncio.get_running_loop().create_future())
        try:
            if before is not None:
                # Our head update must reach Postgres after the one we chained onto, so it
                # waits there for that batch's COMMIT (or finds the head unmoved, if that
                # batch failed) instead of overtaking it and finding the head not yet moved.
                await before.written
            yield Chained(records, seqs, (start, head))
        finally:
            mine.written.set_result(None)
