"""The outbox worker on real Postgres: claim once, retry with backoff, reclaim a dead lease.

The channel senders (SMPP, SMTP) are their own issues; here a small in-test sender stands in
for them so the worker's own contract is what is tested.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import asyncpg
from support import eventually, sms

from gateway.app import Gateway
from gateway.metrics import Metrics
from gateway.outbox import OutboxWorker
from gateway.senders.base import OutboundSender, OutboxRow, SendError
from gateway.settings import OutboxSettings


class _Recorder:
    """Records what it was asked to send; fails the first ``failures`` attempts."""

    def __init__(self, failures: int = 0, *, temporary: bool = True) -> None:
        self.sent: list[OutboxRow] = []
        self.failures = failures
        self.temporary = temporary

    def available(self) -> bool:
        return True

    async def send(self, row: OutboxRow) -> str | None:
        if self.failures:
            self.failures -= 1
            raise SendError("peer unavailable", temporary=self.temporary)
        self.sent.append(row)
        return f"ref-{row.id}"


def _worker(gateway: Gateway, sender: OutboundSender, **overrides: float) -> OutboxWorker:
    settings = replace(OutboxSettings(), **overrides)  # type: ignore[arg-type]
    return OutboxWorker(gateway.pool, {"sms": sender}, settings, Metrics())


async def test_queued_reply_is_sent_once_and_marked_sent(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """A committed confirmation is handed to the channel's sender once, then marked sent."""
    await gateway.pipeline.handle(sms("STOP"))
    recorder = _Recorder()
    worker = _worker(gateway, recorder)

    assert 1 == await worker.run_once()
    assert 0 == await worker.run_once()
    assert 1 == len(recorder.sent)
    row = await db.fetchrow("SELECT status, provider_ref, attempts FROM outbox")
    assert row is not None
    assert ("sent", f"ref-{recorder.sent[0].id}", 1) == (
        row["status"],
        row["provider_ref"],
        row["attempts"],
    )


async def test_two_workers_never_claim_the_same_row(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """FOR UPDATE SKIP LOCKED: concurrent workers split the rows between them."""
    for i in range(40):
        await gateway.pipeline.handle(sms("HELP", contact=f"+1415557{i:04d}"))
    first, second = _Recorder(), _Recorder()
    await asyncio.gather(
        _worker(gateway, first, batch_size=7).run_once(),
        _worker(gateway, second, batch_size=7).run_once(),
        _worker(gateway, first, batch_size=7).run_once(),
    )
    ids = [r.id for r in first.sent + second.sent]
    assert len(ids) == len(set(ids))


async def test_temporary_failure_is_retried_with_backoff(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """A refused send goes back to the queue with a later due time, then succeeds."""
    await gateway.pipeline.handle(sms("STOP"))
    recorder = _Recorder(failures=1)
    worker = _worker(gateway, recorder, backoff_base_seconds=0.05, backoff_max_seconds=0.05)

    await worker.run_once()
    row = await db.fetchrow("SELECT status, attempts, last_error FROM outbox")
    assert row is not None
    assert ("queued", 1, "peer unavailable") == (row["status"], row["attempts"], row["last_error"])
    await eventually(worker.run_once, interval=0.01, message="the retry never went out")
    assert 1 == len(recorder.sent)
    assert "sent" == await db.fetchval("SELECT status FROM outbox")


async def test_permanent_failure_or_exhausted_retries_mark_the_row_failed(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """A permanent refusal is final at once; a temporary one after max_attempts."""
    await gateway.pipeline.handle(sms("STOP", contact="+14155550001"))
    await _worker(gateway, _Recorder(failures=1, temporary=False)).run_once()
    assert "failed" == await db.fetchval("SELECT status FROM outbox")

    await gateway.pipeline.handle(sms("STOP", contact="+14155550002"))
    worker = _worker(gateway, _Recorder(failures=5), max_attempts=2, backoff_base_seconds=0.0)
    await worker.run_once()
    await worker.run_once()
    statuses = [r["status"] for r in await db.fetch("SELECT status FROM outbox ORDER BY id")]
    assert ["failed", "failed"] == statuses


async def test_a_lease_left_by_a_dead_worker_is_claimed_again(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """A row left 'sending' past its lease (the process died mid-send) is sent again."""
    await gateway.pipeline.handle(sms("STOP"))
    await db.execute(
        "UPDATE outbox SET status = 'sending', attempts = 1,"
        " next_attempt_at = now() - interval '1 second'"
    )
    recorder = _Recorder()
    assert 1 == await _worker(gateway, recorder).run_once()
    assert 2 == recorder.sent[0].attempts


async def test_rows_of_a_channel_without_a_sender_stay_queued(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """Until a channel has a sender, its rows are neither claimed nor failed."""
    await gateway.pipeline.handle(sms("STOP"))
    worker = OutboxWorker(gateway.pool, {}, OutboxSettings(), Metrics())
    assert 0 == await worker.run_once()
    assert ("queued", 0) == tuple(await db.fetchrow("SELECT status, attempts FROM outbox") or ())


class _NoWayOut:
    """A sender with no peer to hand to (an SMPP sender with no SMSC bound), until ``up``."""

    def __init__(self) -> None:
        self.up = False
        self.claimable = False  # what available() says; True with up False is the race
        self.refusals = 0
        self.sent: list[OutboxRow] = []

    def available(self) -> bool:
        return self.claimable or self.up

    async def send(self, row: OutboxRow) -> str | None:
        if not self.up:
            self.refusals += 1
            raise SendError("no SMSC bound for this sender", temporary=True, attempted=False)
        self.sent.append(row)
        return f"ref-{row.id}"


async def test_an_outage_of_any_length_spends_no_attempt(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """While the sender is not available its channel is not claimed; a refusal before anything
    left gives the attempt back and is never final, however many exceed ``max_attempts``. The
    opt-out's confirmation goes out once the peer returns, on its first counted attempt."""
    await gateway.pipeline.handle(sms("STOP"))
    sender = _NoWayOut()
    worker = _worker(gateway, sender, max_attempts=2, backoff_base_seconds=0.0)
    assert 0 == await worker.run_once()
    assert ("queued", 0) == tuple(await db.fetchrow("SELECT status, attempts FROM outbox") or ())

    # The race a bind loss leaves: available when claimed, gone when sent.
    sender.claimable = True
    for _ in range(5):
        assert 1 == await worker.run_once()
    assert 5 == sender.refusals
    row = await db.fetchrow("SELECT status, attempts, last_error FROM outbox")
    assert row is not None
    assert ("queued", 0, "no SMSC bound for this sender") == tuple(row)

    sender.up = True
    assert 1 == await worker.run_once()
    assert [1] == [r.attempts for r in sender.sent]
    assert ("sent", 1) == tuple(await db.fetchrow("SELECT status, attempts FROM outbox") or ())


class _Stalled:
    """A sender whose send waits until released, then fails temporarily (a slow, dead peer)."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    def available(self) -> bool:
        return True

    async def send(self, row: OutboxRow) -> str | None:
        self.started.set()
        await self.release.wait()
        raise SendError("peer went away", temporary=True)


async def test_an_opt_out_cancels_an_opt_in_reply_whose_send_is_in_flight(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """START's reply is being sent when STOP commits; the send fails: it is never retried."""
    await gateway.pipeline.handle(sms("START"))
    stalled = _Stalled()
    worker = OutboxWorker(gateway.pool, {"sms": stalled}, OutboxSettings(), Metrics())
    in_flight = asyncio.create_task(worker.run_once())
    await asyncio.wait_for(stalled.started.wait(), 5)
    assert "sending" == await db.fetchval("SELECT status FROM outbox WHERE kind = 'opt_in'")

    await gateway.pipeline.handle(sms("STOP"))
    stalled.release.set()
    await in_flight

    rows = await db.fetch("SELECT kind, status FROM outbox ORDER BY id")
    assert [("opt_in", "cancelled"), ("opt_out", "queued")] == [
        (r["kind"], r["status"]) for r in rows
    ]
    # Even once due again, only the opt-out confirmation is ever claimed.
    await db.execute("UPDATE outbox SET next_attempt_at = now() - interval '1 hour'")
    recorder = _Recorder()
    await _worker(gateway, recorder).run_once()
    assert ["opt_out"] == [row.kind for row in recorder.sent]


async def test_a_reply_sent_while_an_opt_out_commits_stays_recorded_as_sent(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """A send already on the wire cannot be recalled: its row says 'sent', not 'cancelled'."""
    await gateway.pipeline.handle(sms("START"))
    worker = _worker(gateway, _Recorder())
    rows = await worker.claim()
    await gateway.pipeline.handle(sms("STOP"))
    assert "cancelled" == await db.fetchval("SELECT status FROM outbox WHERE kind = 'opt_in'")
    await worker._mark_sent([(rows[0], "ref-1")])  # the peer had taken it
    assert "sent" == await db.fetchval("SELECT status FROM outbox WHERE kind = 'opt_in'")
