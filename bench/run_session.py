"""SMPP session micro-benchmark: submit_sm per second through one bind, nothing else.

``Session.submit`` as the outbox calls it (pacing, window, response matching, timeout)
against an in-process peer that answers each submit_sm with submit_sm_resp at once, on the
event loop ``serve`` uses (uvloop unless ``GATEWAY_EVENT_LOOP=asyncio``). It measures the
edge's own cost per reply, which bench/run_smpp.py mixes with PostgreSQL, Redis and the
simulator. Best of ``BENCH_SESSION_REPEATS`` (default 5) rounds of ``BENCH_SESSION_N``
(default 20,000) submits, ``window`` 200 and ``submit_rate`` 100,000 as in run_smpp.py.
Run: ``make bench BENCH=session`` or ``python -m bench.run_session``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import struct
import time
from collections.abc import Coroutine
from typing import Any, cast

from gateway.app.workers import loop_factory
from gateway.edges.smpp import codec
from gateway.edges.smpp.codec import Pdu
from gateway.edges.smpp.config import SmscSettings
from gateway.edges.smpp.session import Session

N = int(os.environ.get("BENCH_SESSION_N", "20000"))
REPEATS = int(os.environ.get("BENCH_SESSION_REPEATS", "5"))
REPLY = b"Acme Health: You're unsubscribed and will get no more msgs. Reply START to rejoin."


class _Peer(asyncio.Protocol):
    """Answers bind and submit_sm at once (SMPP 3.4 §4.1, §4.4.2); framing by hand."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, hence the cast.
        self.transport = cast(asyncio.Transport, transport)
        self.buffer = b""
        self.ids = 0

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        out = []
        pos = 0
        while len(buffer) - pos >= 16:
            length, command_id, _, sequence = struct.unpack_from(">LLLL", buffer, pos)
            if len(buffer) - pos < length:
                break
            pos += length
            self.ids += 1
            body = b"%08x\x00" % self.ids if command_id == codec.SUBMIT_SM else b""
            body = b"sim\x00" if command_id == codec.BIND_TRANSCEIVER else body
            resp = command_id | codec.RESPONSE_BIT
            out.append(struct.pack(">LLLL", 16 + len(body), resp, 0, sequence) + body)
        self.buffer = buffer[pos:]
        self.transport.write(b"".join(out))


class _NoDeliveries:
    async def on_deliver(self, session: Session, pdu: Pdu) -> int:
        return codec.ESME_ROK


def _submit(session: Session, i: int) -> Coroutine[Any, Any, str]:
    return session.submit(
        source_addr_ton=0, source_addr_npi=1, source_addr="12345", dest_addr_ton=1,
        dest_addr_npi=1, destination_addr=f"1416555{i % 10000:04d}", esm_class=0,
        data_coding=0, registered_delivery=0, short_message=REPLY,
    )  # fmt: skip


async def _round(session: Session) -> float:
    started = time.perf_counter()
    await asyncio.gather(*(_submit(session, i) for i in range(N)))
    return time.perf_counter() - started


async def _main() -> float:
    server = await asyncio.get_running_loop().create_server(_Peer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    smsc = dataclasses.replace(
        SmscSettings(), name="bench", port=port, system_id="bench", window=200,
        submit_rate=100_000.0, enquire_link_seconds=3600.0,
    )  # fmt: skip
    session = Session(smsc, "transceiver", _NoDeliveries())
    runner = asyncio.create_task(session.run())
    await session.bound.wait()
    best = min([await _round(session) for _ in range(REPEATS)])
    await session.close(1.0)
    runner.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await runner
    server.close()
    return N / best


def main() -> None:
    """Print submits per second on one core."""
    name, factory = loop_factory(os.environ.get("GATEWAY_EVENT_LOOP", "auto"))
    with asyncio.Runner(loop_factory=factory) as runner:
        rate = runner.run(_main())
    print(f"{time.strftime('%Y-%m-%d')}: {rate:,.0f} submit_sm/s through one bind ({name},"
          f" best of {REPEATS} x {N})")  # fmt: skip


if __name__ == "__main__":
    main()
