"""One SMPP bind (I/O layer, SMPP edge): connect, bind, window, enquire_link, reconnect, unbind.

A ``Session`` is an ESME bind to one SMSC in one role (transceiver, receiver or transmitter).
``run()`` keeps it bound until ``close()``: it connects (TLS optional), binds (SMPP 3.4
§4.1), then reads PDUs while a second task sends enquire_link every interval (§4.11). A
request we send that gets no answer within the response timeout is a dead peer: the
connection is aborted and rebuilt after an exponential backoff with full jitter, as is any
refused bind or lost connection.

Requests we send go through a window (§2.7): at most ``window`` outstanding, matched to
their responses by sequence_number. Inbound deliver_sm are handed to the handler each in
its own task, so many wait on the same group commit; the handler returns the
command_status and only then is the deliver_sm_resp written (ack after commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections.abc import Callable
from typing import Any, Protocol

from gateway.edges.smpp import codec
from gateway.edges.smpp.codec import MalformedPdu, Pdu
from gateway.edges.smpp.config import SmscSettings

log = logging.getLogger(__name__)

ROLES = {
    "transceiver": "bind_transceiver",
    "receiver": "bind_receiver",
    "transmitter": "bind_transmitter",
}
# SMPP 3.4 §5.1.3: answers that mean "not now" rather than "never".
TEMPORARY_STATUSES = frozenset(
    {codec.ESME_RSYSERR, codec.ESME_RMSGQFUL, codec.ESME_RTHROTTLED, codec.ESME_RX_T_APPN, 0x45}
)
_THROTTLED = frozenset({codec.ESME_RTHROTTLED, codec.ESME_RMSGQFUL})
_DELIVER_REQUESTS = frozenset({codec.DELIVER_SM})
_MIN_PAUSE = 0.001  # seconds: shorter pacing waits are not slept (Session._pace)


class SessionError(Exception):
    """A request could not be completed; ``temporary`` says whether retrying may help."""

    def __init__(self, message: str, *, temporary: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.temporary = temporary
        self.status = status


class ConnectionLost(Exception):
    """The connection ended (peer closed, unbind, dead peer, broken framing)."""


class DeliverHandler(Protocol):
    """What the edge does with a deliver_sm: return the command_status to answer with."""

    async def on_deliver(self, session: Session, pdu: Pdu) -> int:
        """Handle one deliver_sm; return only when its outcome is committed."""


class Session:
    """One bind to one SMSC."""

    def __init__(
        self,
        smsc: SmscSettings,
        role: str,
        handler: DeliverHandler,
        on_bound: Callable[[], None] = lambda: None,
    ) -> None:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        self.smsc = smsc
        self.role = role
        self._handler = handler
        self._on_bound = on_bound
        self.bound = asyncio.Event()
        self._closing = asyncio.Event()
        self._draining = False
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future[Pdu]] = {}
        self._window = asyncio.Semaphore(smsc.window)
        self._inbound: set[asyncio.Task[None]] = set()
        self._out: list[bytes] = []
        self._sequence = 0
        self._next_submit = 0.0
        self._throttled_until = 0.0
        self._throttle_backoff = smsc.throttle_backoff_seconds
        self.binds = 0  # successful binds, for tests and metrics

    @property
    def name(self) -> str:
        """The SMSC's configured name and our role, for logs."""
        return f"{self.smsc.name}/{self.role}"

    @property
    def can_submit(self) -> bool:
        """True for transmitter and transceiver binds."""
        return self.role != "receiver"

    # ---- the connection lifecycle ---------------------------------------------------------

    async def run(self) -> None:
        """Stay bound until ``close()``; reconnect with backoff and jitter after any failure."""
        failures = 0
        while not self._closing.is_set():
            started = time.monotonic()
            try:
                await self._connect_and_bind()
                failures = 0
                await self._serve()
            except (OSError, TimeoutError, ConnectionLost, SessionError, MalformedPdu) as exc:
                log.warning("smpp session down", extra={"smsc": self.name, "error": str(exc)})
            finally:
                await self._teardown()
            if self._closing.is_set():
                break
            failures = failures + 1 if time.monotonic() - started < 60 else 1
            ceiling = min(
                self.smsc.reconnect_max_seconds,
                self.smsc.reconnect_min_seconds * 2 ** (failures - 1),
            )
            delay = random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not a secret
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), delay)

    async def _connect_and_bind(self) -> None:
        context: ssl.SSLContext | None = None
        if self.smsc.tls:
            context = ssl.create_default_context(cafile=self.smsc.tls_ca_file or None)
            if not self.smsc.tls_verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        timeout = self.smsc.response_timeout_seconds
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.smsc.host, self.smsc.port, ssl=context), timeout
        )
        self._writer = writer
        self._reader_task = asyncio.create_task(self._read(reader), name=f"smpp-read-{self.name}")
        resp = await self.request(
            ROLES[self.role],
            system_id=self.smsc.system_id,
            password=self.smsc.password,
            system_type=self.smsc.system_type,
            interface_version=0x34,
        )
        if resp.status != codec.ESME_ROK:
            raise SessionError(f"bind refused: 0x{resp.status:08X}", temporary=True)
        self.binds += 1
        self.bound.set()
        log.info("smpp bound", extra={"smsc": self.name, "host": self.smsc.host})
        if self.role != "receiver":
            self._on_bound()

    async def _serve(self) -> None:
        enquire = asyncio.create_task(self._enquire_links(), name=f"smpp-enquire-{self.name}")
        try:
            await self._reader_task
        finally:
            enquire.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionLost, SessionError):
                await enquire

    async def _teardown(self) -> None:
        self.bound.clear()
        writer, self._writer = self._writer, None
        self._out = []
        if writer is not None:
            writer.transport.abort()
        task = getattr(self, "_reader_task", None)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionLost("connection lost"))
        self._pending.clear()

    async def close(self, grace: float) -> None:
        """Stop: refuse new deliver_sm (RX_T_APPN), finish those in hand, unbind, disconnect."""
        self._draining = True
        if self._inbound:
            await asyncio.wait(set(self._inbound), timeout=grace)
        if self.bound.is_set():
            with contextlib.suppress(ConnectionLost, SessionError, OSError, TimeoutError):
                await asyncio.wait_for(self.request("unbind"), grace)  # SMPP 3.4 §4.2
        self._closing.set()
        await self._teardown()

    # ---- reading --------------------------------------------------------------------------

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                head = await reader.readexactly(4)
                length = int.from_bytes(head, "big")
                if not codec.MIN_LENGTH <= length <= codec.MAX_LENGTH:
                    # The stream cannot be re-framed after a bad length (SMPP 3.4 §2.3).
                    await self._write(codec.generic_nack(0, codec.ESME_RINVCMDLEN))
                    raise ConnectionLost(f"command_length {length} out of range")
                frame = head + await reader.readexactly(length - 4)
                self._dispatch(frame)
        except asyncio.IncompleteReadError as exc:
            raise ConnectionLost("peer closed the connection") from exc

    def _dispatch(self, frame: bytes) -> None:
        try:
            pdu = codec.decode(frame)
        except MalformedPdu as exc:
            _, command_id, _, sequence = codec.header(frame)
            log.warning("smpp malformed pdu", extra={"smsc": self.name, "error": str(exc)})
            if not command_id & codec.RESPONSE_BIT:
                self._send_nowait(codec.generic_nack(sequence, exc.status))
            return
        if pdu.is_response:
            future = self._pending.pop(pdu.sequence, None)
            if future is not None and not future.done():
                future.set_result(pdu)
            return
        if pdu.command_id in _DELIVER_REQUESTS and pdu.known:
            task = asyncio.create_task(self._deliver(pdu))
            self._inbound.add(task)
            task.add_done_callback(self._inbound.discard)
        elif pdu.command_id == codec.ENQUIRE_LINK:
            self._send_nowait(codec.encode("enquire_link_resp", pdu.sequence))
        elif pdu.command_id == codec.UNBIND:
            self._send_nowait(codec.encode("unbind_resp", pdu.sequence))
            self.bound.clear()
        elif pdu.command_id == codec.ALERT_NOTIFICATION:
            pass  # SMPP 3.4 §4.12.1: no response is defined
        else:
            # outbind, cancel_sm, replace_sm, submit_sm... are not for an ESME to serve.
            self._send_nowait(codec.generic_nack(pdu.sequence, codec.ESME_RINVCMDID))

    async def _deliver(self, pdu: Pdu) -> None:
        if self._draining:
            status = codec.ESME_RX_T_APPN
        else:
            try:
                status = await self._handler.on_deliver(self, pdu)
            except Exception:
                log.exception("smpp deliver_sm handler failed", extra={"smsc": self.name})
                status = codec.ESME_RX_T_APPN  # nothing acknowledged: the SMSC retries
        self._send_nowait(codec.deliver_sm_resp(pdu.sequence, status))

    # ---- writing --------------------------------------------------------------------------

    def _send_nowait(self, frame: bytes) -> None:
        # Frames written in one event-loop turn leave in one send(): under load a turn answers
        # dozens of deliver_sm at once, and a syscall per PDU was the edge's largest cost.
        if self._writer is None or self._writer.is_closing():
            return
        self._out.append(frame)
        if len(self._out) == 1:
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        frames, self._out = self._out, []
        if frames and self._writer is not None and not self._writer.is_closing():
            self._writer.write(b"".join(frames))

    async def _write(self, frame: bytes) -> None:
        if self._writer is None or self._writer.is_closing():
            raise ConnectionLost("not connected")
        self._send_nowait(frame)
        if self._writer.transport.get_write_buffer_size() > 256 * 1024:
            await self._writer.drain()

    def _next_sequence(self) -> int:
        # SMPP 3.4 §5.1.4: 0x00000001 to 0x7FFFFFFF, then wrap.
        self._sequence = self._sequence % 0x7FFFFFFF + 1
        return self._sequence

    async def request(
        self, name: str, *, tlvs: dict[int, bytes] | None = None, **params: Any
    ) -> Pdu:
        """Send a request inside the window; return its response (or generic_nack)."""
        async with self._window:
            sequence = self._next_sequence()
            loop = asyncio.get_running_loop()
            future: asyncio.Future[Pdu] = loop.create_future()
            self._pending[sequence] = future
            # One timer on the future itself: asyncio.wait_for wraps every request in more
            # futures and callbacks, a cost paid per reply (bench/run_session.py).
            timer = loop.call_later(self.smsc.response_timeout_seconds, _expire, future)
            try:
                await self._write(codec.encode(name, sequence, tlvs=tlvs, **params))
                return await future
            except TimeoutError as exc:
                raise SessionError(f"{name}: no response", temporary=True) from exc
            finally:
                timer.cancel()
                self._pending.pop(sequence, None)

    async def _enquire_links(self) -> None:
        while True:
            await asyncio.sleep(self.smsc.enquire_link_seconds)
            try:
                await self.request("enquire_link")
            except SessionError:
                log.warning("smpp peer not answering: reconnecting", extra={"smsc": self.name})
                if self._writer is not None:
                    self._writer.transport.abort()
                return

    # ---- submitting -----------------------------------------------------------------------

    async def submit(
        self, *, tlvs: dict[int, bytes] | None = None, patience: float = 30.0, **params: Any
    ) -> str:
        """submit_sm at the bind's rate; wait out ESME_RTHROTTLED / RMSGQFUL; return the id."""
        deadline = time.monotonic() + patience
        while True:
            if not self.bound.is_set():
                raise SessionError("not bound", temporary=True)
            await self._pace()
            try:
                resp = await self.request("submit_sm", tlvs=tlvs, **params)
            except ConnectionLost as exc:
                raise SessionError("connection lost during submit_sm", temporary=True) from exc
            if resp.command_id == codec.GENERIC_NACK:
                raise SessionError(f"generic_nack 0x{resp.status:08X}", temporary=True)
            if resp.status == codec.ESME_ROK:
                self._throttle_backoff = self.smsc.throttle_backoff_seconds
                return resp.cstr("message_id")
            if resp.status in _THROTTLED and time.monotonic() < deadline:
                # SMPP 3.4 §5.1.3: slow down for a while, then try the same message again.
                pause = self._throttle_backoff
                self._throttle_backoff = min(pause * 2, self.smsc.throttle_backoff_max_seconds)
                self._throttled_until = max(self._throttled_until, time.monotonic() + pause)
                continue
            raise SessionError(
                f"submit_sm refused: 0x{resp.status:08X}",
                temporary=resp.status in TEMPORARY_STATUSES,
                status=resp.status,
            )

    async def _pace(self) -> None:
        """Token pacing: one submit every 1/submit_rate seconds, after any throttle pause."""
        now = time.monotonic()
        slot = max(now, self._next_submit, self._throttled_until)
        self._next_submit = slot + 1.0 / self.smsc.submit_rate
        # A wait under a millisecond is not taken: the loop's timers are no finer (uvloop
        # counts in milliseconds), and each one cost a timer and a loop turn per submit at
        # high rates. The slots still advance, so the rate over any second is unchanged.
        if slot - now >= _MIN_PAUSE:
            await asyncio.sleep(slot - now)


def _expire(future: asyncio.Future[Pdu]) -> None:
    """A request's response timeout: the peer did not answer in time."""
    if not future.done():
        future.set_exception(TimeoutError())
