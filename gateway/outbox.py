"""The outbox worker (I/O layer): claims committed replies and hands them to a channel's sender.

Rows are written by the consent writer in the same transaction as the change they confirm.
The worker claims due rows with ``FOR UPDATE SKIP LOCKED`` (so any number of instances can
run it), marks them ``sending`` with a lease, sends outside any transaction, and records the
result. A row whose lease expires (the process died mid-send) is claimed again: delivery is
at least once, and a channel sender that can detect its own duplicates should. Temporary
failures retry with exponential backoff and jitter; after ``max_attempts`` the row is
``failed``. Channels without a sender are never claimed: their rows wait, queued; so are the
channels whose sender is not ``available()`` (no SMSC bound), until it is. A refusal raised
before anything left (``SendError(attempted=False)``) gives the attempt back: ``attempts``
counts sends that may have reached a peer, and an outage of any length never fails a reply
for good (docs/DESIGN.md, invariant 5).

One row never stops the worker: whatever a sender raises, expected (``SendError``) or not
(a provider's answer we could not decode, a bug), fails or retries *that row*, with the
reason stored in ``last_error`` and logged (an unexpected error is retried like a temporary
one, bounded by ``max_attempts``: at least once, as a reply must not be lost). A failure of
the worker's own loop is logged and retried at the next poll, and the loop itself runs under
the supervisor (gateway/supervisor.py). ``monitor`` samples the backlog for the metrics and
``oldest_opt_out_age`` tells readiness whether opt-out confirmations are leaving in time
(47 CFR 64.1200(a)(11): one confirmation, presumed reasonable within five minutes).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping

import asyncpg

from gateway.logs import mask, mask_address
from gateway.metrics import Metrics
from gateway.senders.base import OutboundSender, OutboxRow, SendError
from gateway.settings import OutboxSettings
from gateway.store.outbox_rows import OutboxRows
from gateway.waiting import wait_event

log = logging.getLogger(__name__)


class OutboxWorker:
    """Sends queued replies for the channels it has senders for."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        senders: Mapping[str, OutboundSender],
        settings: OutboxSettings,
        metrics: Metrics,
    ) -> None:
        self._rows = OutboxRows(pool)
        self._senders = dict(senders)
        self._settings = settings
        self._metrics = metrics
        self._wake = asyncio.Event()
        self._bring_forward: set[str] = set()

    def wake(self) -> None:
        """New rows were committed: look now instead of at the next poll."""
        self._wake.set()

    def channel_ready(self, channel: str) -> None:
        """A channel's peer is back (an SMSC bound again): retry its waiting rows now.

        Without this a row could sit out its backoff (up to ``backoff_max_seconds``) after
        the peer returned, and an opt-out confirmation must leave within five minutes
        (FCC 24-24; 47 CFR 64.1200(a)(10)).
        """
        self._bring_forward.add(channel)
        self._wake.set()

    async def _retry_now(self) -> None:
        channels, self._bring_forward = sorted(self._bring_forward), set()
        await self._rows.bring_forward(channels)

    def backoff(self, attempts: int) -> float:
        """Seconds before retry ``attempts``: exponential, capped, with full jitter."""
        ceiling = min(
            self._settings.backoff_max_seconds,
            self._settings.backoff_base_seconds * 2 ** max(attempts - 1, 0),
        )
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not a secret

    async def claim(self) -> list[OutboxRow]:
        """Lease up to ``batch_size`` due rows of channels we can send."""
        channels = [channel for channel, s in self._senders.items() if s.available()]
        if not channels:
            return []
        rows = await self._rows.claim(
            channels, self._settings.batch_size, self._settings.lease_seconds
        )
        return [OutboxRow(**r) for r in rows]

    async def _deliver(self, row: OutboxRow) -> tuple[OutboxRow, str | None] | None:
        sender = self._senders[row.channel]
        try:
            ref = await sender.send(row)
        except SendError as exc:
            await self._record_failure(
                row, str(exc), temporary=exc.temporary, attempted=exc.attempted
            )
            return None
        except Exception as exc:  # not ours to expect, and still this row's failure only
            reason = f"unexpected {type(exc).__name__}: {mask(str(exc))}"
            log.error(
                "outbox sender raised",
                extra={"outbox_id": row.id, "channel": row.channel, "error": reason[:300]},
                exc_info=exc,
            )
            await self._record_failure(row, reason, temporary=True)
            return None
        return row, ref

    async def _record_failure(
        self, row: OutboxRow, error: str, *, temporary: bool, attempted: bool = True
    ) -> None:
        try:
            await self._failed(row, error, temporary=temporary, attempted=attempted)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            # The row stays leased: it is claimed again when its lease expires.
            log.warning("outbox: could not record a failed send", extra={"outbox_id": row.id})

    async def _mark_sent(self, sent: list[tuple[OutboxRow, str | None]]) -> None:
        await self._rows.mark_sent([row.id for row, _ in sent], [ref for _, ref in sent])
        for row, _ in sent:
            self._metrics.outbox.labels(row.channel, "sent").inc()

    async def _failed(
        self, row: OutboxRow, error: str, *, temporary: bool, attempted: bool
    ) -> None:
        final = not temporary or (attempted and row.attempts >= self._settings.max_attempts)
        await self._rows.failed(
            row.id,
            final=final,
            error=error[:500],
            # Not attempted: the claim's increment is handed back, and the wait stays at this
            # row's level instead of growing, as nothing was tried; the bind's return brings
            # the row forward anyway (``channel_ready``).
            retry_in=0.0 if final else self.backoff(row.attempts),
            attempted=attempted,
        )
        self._metrics.outbox.labels(row.channel, "failed" if final else "retry").inc()
        log.log(
            logging.WARNING if attempted else logging.INFO,
            "outbox send failed",
            extra={
                "outbox_id": row.id,
                "recipient": mask_address(row.recipient),
                "final": final,
                "attempts": row.attempts,
                "reason": mask(error)[:200],
            },
        )

    async def run_once(self) -> int:
        """Claim and send one batch; return how many rows were claimed."""
        rows = await self.claim()
        if rows:
            results = await asyncio.gather(*(self._deliver(r) for r in rows))
            sent = [r for r in results if r is not None]
            if sent:
                await self._mark_sent(sent)
        return len(rows)

    async def run(self) -> None:
        """Send until cancelled; a cancelled send keeps its lease and is retried later."""
        while True:
            self._wake.clear()
            try:
                if self._bring_forward:
                    await self._retry_now()
                claimed = await self.run_once()
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                log.warning("outbox: database unavailable; retrying")
                claimed = 0
            except Exception:
                # Claimed rows not marked keep their lease and are sent again when it
                # expires (at least once); the loop goes on.
                log.exception("outbox batch failed; retrying at the next poll")
                claimed = 0
            if claimed:
                continue
            await wait_event(self._wake, self._settings.poll_interval_seconds)

    async def backlog(self) -> dict[tuple[str, str], tuple[int, float]]:
        """(channel, kind) -> (rows queued or being sent, age in seconds of the oldest)."""
        return await self._rows.backlog()

    async def oldest_opt_out_age(self) -> float:
        """Seconds the oldest unsent opt-out confirmation has waited (0 when none waits)."""
        return await self._rows.oldest_waiting_age("opt_out")

    async def monitor(self) -> None:
        """Sample the backlog for ``gateway_outbox_backlog`` and ``..._oldest_seconds``."""
        while True:
            try:
                self._metrics.outbox_waiting = await self.backlog()
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                log.warning("outbox monitor: database unavailable")
            await asyncio.sleep(self._settings.monitor_interval_seconds)  # a sampling timer
