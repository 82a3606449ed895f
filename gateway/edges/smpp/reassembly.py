"""Concatenated-SMS reassembly (I/O layer, SMPP edge): parts held, unacknowledged, until whole.

A long MO arrives as several deliver_sm, in any order, each with a UDH or SAR reference
(SMPP 3.4 §5.3.2.22-24; 3GPP TS 23.040 §9.2.3.24.1). The key is (SMSC, source, destination,
reference, total): two people may use the same 8-bit reference at once.

Ack after commit (DESIGN.md invariant 1) applies to every part: a part's deliver_sm_resp is
held until the whole text is committed, so a crash loses nothing the SMSC thinks delivered.
Each waiting part holds a future; the part that completes the message resolves them all
with the pipeline's answer. When a message stays incomplete for ``timeout`` seconds every
held part is answered ESME_RX_T_APPN and the SMSC redelivers them. This needs an SMSC window
of at least the number of parts, which every SMSC we know of offers (Kannel's default is 10).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from gateway.edges.smpp.codec import ESME_RX_T_APPN
from gateway.edges.smpp.text import Concat

PartKey = tuple[str, str, str, int, int]  # smsc, source, destination, ref, total


@dataclass(slots=True)
class _Group:
    parts: dict[int, bytes] = field(default_factory=dict)
    waiters: dict[int, asyncio.Future[int]] = field(default_factory=dict)
    timer: asyncio.TimerHandle | None = None


@dataclass(frozen=True, slots=True)
class Complete:
    """A whole message: its parts' bodies in order, and the futures to answer."""

    key: PartKey
    bodies: tuple[bytes, ...]
    waiters: tuple[asyncio.Future[int], ...]

    def answer(self, status: int) -> None:
        """Resolve every held part with ``status`` (the deliver_sm_resp command_status)."""
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(status)


class Reassembler:
    """Holds parts until their message is complete or times out."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._groups: dict[PartKey, _Group] = {}

    def __len__(self) -> int:
        return len(self._groups)

    def add(
        self, smsc: str, source: str, dest: str, concat: Concat, body: bytes
    ) -> Complete | asyncio.Future[int]:
        """Add a part: the whole message when this part completes it, else a future to await.

        The future resolves with the command_status to answer this part with.
        """
        key: PartKey = (smsc, source, dest, concat.ref, concat.total)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group()
            loop = asyncio.get_running_loop()
            group.timer = loop.call_later(self._timeout, self._expire, key)
        old = group.waiters.pop(concat.seq, None)
        if old is not None and not old.done():
            # The SMSC gave up on the earlier copy and sent it again: answer the old one.
            old.set_result(ESME_RX_T_APPN)
        group.parts[concat.seq] = body
        if len(group.parts) < concat.total:
            future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            group.waiters[concat.seq] = future
            return future
        del self._groups[key]
        if group.timer is not None:
            group.timer.cancel()
        bodies = tuple(group.parts[n] for n in range(1, concat.total + 1))
        return Complete(key, bodies, tuple(group.waiters.values()))

    def _expire(self, key: PartKey) -> None:
        group = self._groups.pop(key, None)
        if group is None:
            return
        for waiter in group.waiters.values():
            if not waiter.done():
                waiter.set_result(ESME_RX_T_APPN)

    def close(self) -> None:
        """Answer every held part ESME_RX_T_APPN (shutdown): the SMSC will redeliver."""
        for key in list(self._groups):
            group = self._groups[key]
            if group.timer is not None:
                group.timer.cancel()
            self._expire(key)
