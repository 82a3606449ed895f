"""Concatenated-SMS reassembly (I/O layer, SMPP edge): each part committed, then acknowledged.

A long MO arrives as several deliver_sm, in any order, each with a UDH or SAR reference
(SMPP 3.4 §5.3.2.22-24; 3GPP TS 23.040 §9.2.3.24.1). A set is named by (SMSC, source,
destination, reference, total): two people may use the same 8-bit reference at once.

Ack after commit holds for every part, and for each part on its own: a part's
deliver_sm_resp is ESME_ROK once that part is committed in PostgreSQL (ESME_RX_T_APPN when
it cannot be), never held for the rest of the text. Holding it stalled any SMSC with a
window of 1 for deliver_sm: it waits for the answer before sending the next part, so the
set never completed and the first part was redelivered forever.

The store decides, under the set's row lock, when a set goes to the pipeline, so parts may
arrive on any bind or instance and a set is claimed once:

- the part that completes a set hands the whole text over, and its own answer is the
  pipeline's (ESME_ROK only after the consent change committed);
- a set with no new part for ``reassembly_timeout_seconds`` is handed over by the sweep
  (``Reassembler.run``) with the parts it has, in order, missing ones skipped: a text that
  begins with STOP is an opt-out even if its second part never comes. Such a text is
  never taken as an opt-in (``InboundMessage.partial``), and its evidence names the parts
  that were missing;
- a part that arrives after its set was handed over at the timeout makes the set due
  again, with everything it now has (a new inbound event: a STOP in a late part is not
  lost; what the first hand-off recorded stands);
- a hand-off whose process died (SIGKILL between the claim and the pipeline's answer) is
  claimed again by the sweep after the timeout, on any instance, with the same parts.

The inbound event's dedupe key names the set and the number of parts handed over, so a
hand-off repeated for any of these reasons is recorded once. After a restart the sweep
waits one timeout before its first pass: the SMSC first delivers the parts it kept while
we were down, and a set they complete is handed over whole rather than in pieces.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from itertools import groupby
from typing import Protocol

from gateway.edges.smpp import codec
from gateway.edges.smpp.text import Concat, decode_text
from gateway.errors import TemporaryFailure
from gateway.messages import SmsPartSet

log = logging.getLogger(__name__)

_SWEEP_BATCH = 100  # sets claimed per sweep transaction


class PartStore(Protocol):
    """``gateway.store.sms_parts.SmsPartStore`` as the edge sees it."""

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
        """Commit a part; return the set to hand over now, else None."""

    async def claim_due(self, timeout_seconds: float, limit: int) -> list[SmsPartSet]:
        """Claim the sets due at the timeout."""

    async def handed_off(self, part_set: SmsPartSet) -> None:
        """Record that the pipeline answered for ``part_set``."""

    async def purge(self, keep_seconds: float) -> int:
        """Forget sets handed off long ago."""


# The edge's hand-off: the set's text through the pipeline, answered as a command_status.
HandOff = Callable[[SmsPartSet], Awaitable[int]]


def join_parts(part_set: SmsPartSet, default_alphabet: str) -> str:
    """The text of the parts handed over, in order.

    Adjacent parts in one data_coding are decoded together, so an escape sequence (GSM
    03.38 §6.2.1.1) or a surrogate pair split across two parts stays whole; a phone that
    coded its parts differently still gets each part read in its own coding.
    """
    pieces = zip(part_set.codings, part_set.bodies, strict=True)
    return "".join(
        decode_text(b"".join(body for _, body in run), coding, default_alphabet=default_alphabet)
        for coding, run in groupby(pieces, key=lambda piece: piece[0])
    )


class Reassembler:
    """Commits parts as they come and hands complete (or timed-out) sets to the pipeline."""

    def __init__(self, store: PartStore, hand_off: HandOff, *, timeout: float, keep: float) -> None:
        self._store = store
        self._hand_off = hand_off
        self._timeout = timeout
        self._keep = keep  # how long a handed-over set is remembered (the dedupe window)
        self._interval = max(0.05, min(timeout / 10, 5.0))

    async def add(
        self, smsc: str, source: str, dest: str, concat: Concat, coding: int, body: bytes
    ) -> int:
        """Commit one part; return the command_status to answer it with."""
        try:
            due = await self._store.add(
                smsc, source, dest, concat.ref, concat.total, concat.seq, coding, body
            )
        except TemporaryFailure:
            return codec.ESME_RX_T_APPN  # not committed: the SMSC delivers it again
        if due is None:
            return codec.ESME_ROK
        return await self._deliver(due)

    async def _deliver(self, part_set: SmsPartSet) -> int:
        status = await self._hand_off(part_set)
        if status != codec.ESME_RX_T_APPN:
            try:
                await self._store.handed_off(part_set)
            except TemporaryFailure:
                # The sweep claims the set again after the timeout; the dedupe key makes
                # that hand-off a duplicate of this one, recorded once.
                log.warning("smpp part set left claimed", extra={"set": part_set.id})
        return status

    async def run(self) -> None:
        """Sweep until cancelled: hand over the sets due at the timeout, forget old ones.

        One set that fails is logged and left for the next pass; the loop goes on.
        """
        await asyncio.sleep(self._timeout)  # after a restart, let the SMSC deliver first
        while True:
            try:
                claimed = await self.sweep_once()
            except Exception as exc:  # noqa: BLE001 - one bad pass must not stop the sweep
                log.warning("smpp reassembly sweep failed", extra={"error": type(exc).__name__})
                claimed = 0
            if claimed < _SWEEP_BATCH:
                await asyncio.sleep(self._interval)

    async def sweep_once(self) -> int:
        """One pass: claim the sets that are due and hand each over; return how many."""
        due = await self._store.claim_due(self._timeout, _SWEEP_BATCH)
        await asyncio.gather(*(self._deliver_one(part_set) for part_set in due))
        await self._store.purge(self._keep)
        return len(due)

    async def _deliver_one(self, part_set: SmsPartSet) -> None:
        try:
            await self._deliver(part_set)
        except Exception as exc:  # noqa: BLE001 - a failed set is claimed again after the timeout
            log.warning(
                "smpp part set hand-off failed",
                extra={"set": part_set.id, "error": type(exc).__name__},
            )
