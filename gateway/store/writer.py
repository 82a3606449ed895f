"""Consent writer (I/O layer): applies decisions to Postgres with group commit, then the cache.

Edges call ``submit()`` and await the committed ``Outcome``; only then may they acknowledge
(docs/DESIGN.md, invariant 1). Events waiting at the same moment share one transaction, which is
what lets a 2-core machine keep thousands of durable (``synchronous_commit = on``) events
per second: one WAL flush covers the batch. Each event's rows (inbound record, ledger
events, consent rows, outbox rows) are written together or not at all, and a batch that
fails for one event's sake is retried event by event so one bad event fails alone.

Per batch, in one transaction:

1. contacts are created if new and locked (in sorted order, so two instances never
   deadlock): that lock serialises every change for one contact across instances;
2. inbound events are inserted ``ON CONFLICT (dedupe_key) DO NOTHING`` (a redelivery gets
   ``DUPLICATE`` and changes nothing, invariant 3) and the current states are read, from a
   snapshot taken with the locks held; steps 1 and 2 are one round trip (statements.py).
   Then the suppression list is read for the events that could give consent, under the
   contact locks (an erasure of that contact waits for them, or has committed and is seen);
3. the plan (plan.py, no I/O): ``keywords.consent.decide`` runs event by event, in order,
   and gives the ledger, consent, outbox and cache rows. A capture for a suppressed address
   that the plan refuses (``Suppressed``) rolls the batch back, and it is committed again
   without it; the person's own opt-in lifts the suppression here, audited, with a NOTIFY
   that tells every instance;
4. ledger rows get gap-free ``seq`` and chained hashes from the head (chain.py); the head is
   moved on only if it is still that one, else the batch is chained again (``HeadMoved``);
5. consent rows are upserted with ``version + 1`` and outbox rows inserted;
6. cache tombstones with the new versions are written *before* COMMIT (invalidate.py);
   if Redis cannot take them, the keys go to ``cache_repair`` in this same transaction;
7. COMMIT, then the futures resolve, then the new states are written to the cache.

The tombstones are sent to Redis while steps 4 and 5 run (they carry the versions decided
in step 3, under the contact locks) and awaited before COMMIT. The post-commit cache write
is awaited by nobody, and rides on the next batch's tombstones when events are queued
(invalidate.py, ``Fills``).

Each writer task keeps one pooled connection across batches, and the next transaction's
BEGIN goes in the COMMIT's round trip (``COMMIT; BEGIN``); lease.py says why, and which
failures a new transaction may cure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import asyncpg

if TYPE_CHECKING:
    from gateway.store.db import Connection

from gateway.errors import Suppressed, TemporaryFailure
from gateway.messages import Outcome, OutcomeStatus
from gateway.metrics import Metrics
from gateway.store import plan
from gateway.store import statements as sql
from gateway.store import suppression as suppression_list
from gateway.store.audit_log import write_audit
from gateway.store.cache import CachedConsent, ConsentCache, ConsentKey
from gateway.store.chain import Chain
from gateway.store.guard import CacheGuard
from gateway.store.invalidate import Fills
from gateway.store.lease import Lease, is_closed, is_connection_error, retry_reason
from gateway.store.plan import LedgerRow
from gateway.store.plan import PreparedEvent as PreparedEvent  # the edges build it

log = logging.getLogger(__name__)

_ATTEMPTS = 3
_MAX_FILLS = 8  # post-commit cache writes in flight before the writer waits for them


@dataclass(slots=True)
class _Pending:
    event: PreparedEvent
    future: asyncio.Future[Outcome]


@dataclass(frozen=True, slots=True)
class _Written:
    """What ``write_changes`` assigned: ledger seqs in order, outbox ids per inbound id."""

    seqs: Sequence[int]
    ids: dict[int, list[int]]


@dataclass(frozen=True, slots=True)
class _Applied:
    """What one transaction wrote, kept for the post-commit cache update."""

    outcomes: dict[str, Outcome]
    cache_entries: dict[ConsentKey, CachedConsent]
    ledger: list[LedgerRow]
    lifted: list[bytes]  # suppression hashes removed


class SuppressedCapture(Exception):
    """Events of this batch captured consent for suppressed addresses: roll back without."""

    def __init__(self, keys: Set[str]) -> None:
        super().__init__(f"{len(keys)} capture(s) for suppressed addresses")
        self.keys = keys


class ConsentWriter:
    """The single path by which consent changes reach Postgres."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        cache: ConsentCache,
        guard: CacheGuard,
        metrics: Metrics,
        *,
        max_batch: int,
        suppression: suppression_list.Suppression | None = None,
    ) -> None:
        self._pool = pool
        self._metrics = metrics
        self._max_batch = max_batch
        self._suppression = suppression
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._fills = Fills(cache, guard, max_in_flight=_MAX_FILLS)
        self._chain = Chain()  # shared by the writer tasks

    def running(self) -> bool:
        """True while every writer task is alive (readiness)."""
        return bool(self._tasks) and not any(t.done() for t in self._tasks)

    async def submit(self, event: PreparedEvent) -> Outcome:
        """Write ``event``; return once committed, or raise ``TemporaryFailure``."""
        if not self._tasks or all(t.done() for t in self._tasks):
            raise TemporaryFailure("the writer is not running")
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(event, future))
        return await future

    def start(self, writers: int = 2, *, on_dead: Callable[[str], None] | None = None) -> None:
        """Start the batching tasks.

        Two by default: while one batch waits for its COMMIT (the WAL flush), the next is
        already locking contacts and reading states. They serialise where they must, on
        the contact rows they share and on ``ledger_head``. A batch that fails in any way
        fails its own events (the peers retry) and the task goes on; a task that ends
        anyway is reported to ``on_dead``, which ends the process (gateway/app.py).
        """
        self._tasks = [
            asyncio.create_task(self._run(), name=f"consent-writer-{i}") for i in range(writers)
        ]
        if on_dead is not None:
            for task in self._tasks:
                task.add_done_callback(lambda t: self._ended(t, on_dead))

    @staticmethod
    def _ended(task: asyncio.Task[None], on_dead: Callable[[str], None]) -> None:
        if task.cancelled():
            return  # stop() asked for it
        exc = task.exception()
        name = type(exc).__name__ if exc is not None else "returned"
        on_dead(f"{task.get_name()} ended ({name})")

    async def stop(self) -> None:
        """Finish every queued event, then stop (SIGTERM drains in-flight work)."""
        if not self._tasks:
            return
        await self._queue.join()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._fills.drain()

    async def _run(self) -> None:
        lease = Lease(self._pool)
        try:
            while True:
                batch = [await self._queue.get()]
                while len(batch) < self._max_batch and not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                try:
                    await self._process(batch, lease)
                except Exception:
                    # A bug of ours, not the database: the events fail (their peers retry,
                    # and a retry of one that did commit is a duplicate) and the task goes on.
                    log.exception("writer batch failed", extra={"events": len(batch)})
                    self._chain.forget()
                    await lease.discard()
                    for pending in batch:
                        if not pending.future.done():
                            pending.future.set_exception(TemporaryFailure("could not commit"))
                finally:
                    for _ in batch:
                        self._queue.task_done()
        finally:
            await lease.release()

    async def _process(self, batch: list[_Pending], lease: Lease) -> None:
        started = time.perf_counter()
        try:
            applied = await self._apply_with_retry([p.event for p in batch], lease)
        except SuppressedCapture as refused:
            rest = []
            for pending in batch:
                if pending.event.message.dedupe_key not in refused.keys:
                    rest.append(pending)
                elif not pending.future.done():
                    pending.future.set_exception(
                        Suppressed("this person asked to be erased and is never messaged again")
                    )
            if rest:
                await self._process(rest, lease)
            return
        except Exception as exc:  # noqa: BLE001 - whatever failed: one by one, or peers retry
            if len(batch) > 1 and not is_connection_error(exc):
                # One event may be at fault: give each its own transaction.
                log.warning(
                    "batch failed; retrying its events one by one",
                    extra={
                        "events": len(batch),
                        "error": type(exc).__name__,
                        "detail": str(exc)[:200],
                    },
                )
                for pending in batch:
                    await self._process([pending], lease)
                return
            log.warning(
                "commit failed; peers must retry",
                extra={"events": len(batch), "error": type(exc).__name__, "detail": str(exc)[:200]},
            )
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(TemporaryFailure("could not commit"))
            self._fills.now()  # what earlier batches committed must not wait on this one
            return
        if applied.lifted and self._suppression is not None:
            self._suppression.discard(applied.lifted)  # the NOTIFY tells the other instances
        self._resolve(batch, applied)  # first: the edges may answer while we count
        self._metrics.batch_size.observe(len(batch))
        self._metrics.commit_seconds.observe(time.perf_counter() - started)
        for action, count in Counter(row.action for row in applied.ledger).items():
            self._metrics.ledger_events.labels(action).inc(count)
        await self._fills.committed(applied.cache_entries, queued=not self._queue.empty())

    @staticmethod
    def _resolve(batch: list[_Pending], applied: _Applied) -> None:
        """Hand each committed event its outcome: the edges may acknowledge now."""
        seen: set[str] = set()
        for pending in batch:
            key = pending.event.message.dedupe_key
            outcome = applied.outcomes[key]
            if key in seen:
                # Copies of one message in one batch: the first decided, the rest duplicate it.
                outcome = Outcome(OutcomeStatus.DUPLICATE, outcome.inbound_id, None)
            seen.add(key)
            if not pending.future.done():
                pending.future.set_result(outcome)

    async def _apply_with_retry(self, events: Sequence[PreparedEvent], lease: Lease) -> _Applied:
        for attempt in range(_ATTEMPTS):
            conn = await lease.connection()
            try:
                if not conn.is_in_transaction():
                    await conn.execute("BEGIN")
                applied = await self._apply(conn, events)
                # The next batch's transaction opens in the same round trip (lease.py). If
                # COMMIT fails, Postgres skips the BEGIN and the error reaches us as usual.
                await conn.execute("COMMIT; BEGIN")
                return applied
            except BaseException as exc:
                reason = retry_reason(exc)
                # Whatever this batch chained onto, or others onto it, may not commit.
                if reason == "head_moved":
                    self._chain.moved()
                else:
                    self._chain.forget()
                if is_connection_error(exc) or is_closed(conn):
                    await lease.discard()
                elif conn.is_in_transaction():
                    await lease.rollback()
                if reason is None or attempt == _ATTEMPTS - 1:
                    raise
                self._metrics.commit_retries.labels(reason).inc()
                if reason != "head_moved":
                    await asyncio.sleep(0.005 * (attempt + 1))
        raise AssertionError("unreachable")

    async def _apply(self, conn: Connection, events: Sequence[PreparedEvent]) -> _Applied:
        unique = plan.unique_events(events)
        recorded = await sql.record(
            conn,
            [(e.catalog.channel.value, e.address) for e in events],
            [plan.inbound_row(e) for e in unique.values()],
        )
        fresh = recorded.fresh
        # After the contact locks, from a new snapshot: an erasure has committed or waits.
        suppressed = await self._suppressed(conn, unique, fresh)
        now = datetime.now(UTC)
        batch = plan.plan_batch(unique, recorded, suppressed, now)
        if batch.refused:
            raise SuppressedCapture(batch.refused)  # before anything reached Redis
        # Redis takes the tombstones while Postgres takes the changes; both before COMMIT.
        invalidation = self._fills.tombstone(batch.cache_entries) if batch.consent else None
        try:
            written = await self._write(conn, batch, now)
        finally:
            if invalidation is not None:
                await invalidation.wait()
        if invalidation is not None:
            await invalidation.complete(conn, batch.consent)

        seq_by_inbound: dict[int, list[int]] = {}
        for row, seq in zip(batch.ledger, written.seqs, strict=True):
            seq_by_inbound.setdefault(row.inbound_id or 0, []).append(seq)
        lifted = await self._lift(conn, batch.lifts, seq_by_inbound) if batch.lifts else []
        duplicates = [k for k in unique if k not in fresh]
        earlier = await sql.existing_inbound(conn, duplicates) if duplicates else {}
        outcomes: dict[str, Outcome] = {}
        for key in unique:
            if key in fresh:
                iid = fresh[key]
                outcomes[key] = Outcome(
                    OutcomeStatus.COMMITTED,
                    iid,
                    batch.decisions[key],
                    tuple(seq_by_inbound.get(iid, ())),
                    tuple(written.ids.get(iid, ())),
                )
            else:
                outcomes[key] = Outcome(OutcomeStatus.DUPLICATE, earlier[key], None)
        return _Applied(outcomes, batch.cache_entries, batch.ledger, lifted)

    async def _write(self, conn: Connection, batch: plan.Plan, now: datetime) -> _Written:
        """Steps 4 and 5: chain the ledger rows onto the head and write everything."""
        async with self._chain.append(conn, batch.ledger) as chained:
            seqs = chained.seqs
            consent = [
                (r.contact_id, r.sender, r.channel, r.program, r.state.value, r.version, now,
                 seqs[r.ledger_index])
                for r in batch.consent.values()
            ]  # fmt: skip
            changes = sql.Changes(
                ledger=chained.records,
                head=chained.heads,
                consent=consent,
                cancel=batch.cancel,
                outbox=batch.outbox,
                offers=batch.offers,
                closed_offers=batch.closed_offers,
            )
            return _Written(seqs, await sql.write_changes(conn, changes))

    async def _suppressed(
        self, conn: Connection, unique: dict[str, PreparedEvent], fresh: dict[str, int]
    ) -> dict[str, list[bytes]]:
        """Events that could give consent to a suppressed address: their hashes, by key."""
        if self._suppression is None:
            return {}
        probes, forms = plan.capture_probes(unique, fresh, self._suppression)
        if not probes:
            return {}
        hit = await suppression_list.suppressed_among(conn, probes)
        return {forms[i][0]: forms[i][1] for i in hit}

    async def _lift(
        self, conn: Connection, lifts: list[plan.Lift], seqs: dict[int, list[int]]
    ) -> list[bytes]:
        """Remove the suppression of each lift, audited, and tell every instance."""
        assert self._suppression is not None
        removed: list[bytes] = []
        for lift in lifts:
            gone = await suppression_list.lift(conn, lift.channel, lift.hashes)
            removed.extend(gone)
            await write_audit(
                conn,
                "subject",  # the person, from their own number or mailbox
                "suppression.lift",
                f"contact:{lift.contact_id}",
                {
                    "channel": lift.channel,
                    "sender": lift.sender,
                    "method": lift.method,
                    "inbound_id": lift.inbound_id,
                    "ledger_seqs": seqs.get(lift.inbound_id, []),
                    "hashes_removed": len(gone),
                },
            )
        if self._suppression.notify_channel:
            await conn.execute(
                "SELECT pg_notify($1, 'suppression')", self._suppression.notify_channel
            )
        return removed
