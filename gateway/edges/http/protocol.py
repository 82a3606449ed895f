"""HTTP connections (I/O layer): what happens before a request reaches a route.

aiohttp reads the request line and headers in its protocol handler (``RequestHandler``) and
answers a malformed one there, outside the application: no middleware and no
``on_response_prepare`` signal sees that 400. Its stock answer quotes the offending bytes
(a request line can carry an unsubscribe token), names the aiohttp and Python versions in
``Server``, and logs a multi-KB traceback for every such request. ``GatewayRunner`` serves
the app through a subclass of that handler which, at the connection level:

- answers a request aiohttp cannot parse with the one error shape and a fixed text (never
  the bytes sent), and logs one short line with the error's type, rate-limited per type;
- cuts a connection whose request head (line and headers) is not complete within
  ``[http] header_timeout_seconds``: counted from the connection's start, or, on a
  keep-alive connection, from the first byte of the next request (nginx's
  ``client_header_timeout``). aiohttp 3.14 has only ``keepalive_timeout``, which a
  trickling client shares with an idle one (default about an hour), so 200 sockets sending
  a header byte a second were held open indefinitely. If bytes had arrived it answers 408
  first (RFC 9110 section 15.5.9, with ``Connection: close``) and closes in stages (RFC
  9112 section 9.6: write side first, then read and discard for up to two seconds), because
  a close with the trickler's later bytes unread makes the kernel send a reset that can
  reach the client before it has read the 408; a connection that sent nothing is closed
  silently, as browsers open spare ones. An idle keep-alive connection
  that sent nothing since its last answer is still ``keepalive_timeout``'s, so a reverse
  proxy's pooled connections are not cut under it;
- honours ``Expect`` only when it is ``100-continue``: aiohttp's default answer to another
  value is a 417 that quotes it (and a 500 when it is not UTF-8), before any middleware. RFC
  9110 section 10.1.1 lets a server ignore an expectation it does not know, so it is removed
  from the request.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestPayloadError
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.edges.http.server import SERVER, http_error, internal_error
from gateway.logs import HIDE_EXC_MESSAGE, LimitedLog

log = logging.getLogger(__name__)

# Written as is when a head times out: there is no request to build a response for.
_TIMEOUT_BODY = (
    b'{"error": {"code": "request_timeout", "message": "the request did not arrive in time"}}'
)
_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"Content-Type: application/json; charset=utf-8\r\n"
    b"Content-Length: " + str(len(_TIMEOUT_BODY)).encode() + b"\r\n"
    b"Connection: close\r\n"
    b"Server: " + SERVER.encode() + b"\r\n\r\n" + _TIMEOUT_BODY
)
# After a 408 the connection reads and drops what still comes for this long, then closes:
# nginx's lingering_timeout is 5 s; two are plenty for an answer this small on its way.
LINGER_SECONDS = 2.0


class GuardedHandler(web.RequestHandler):
    """aiohttp's HTTP/1.1 protocol handler with a head timeout and quiet, fixed refusals."""

    __slots__ = ("_head_bytes", "_head_timeout", "_head_timer", "_linger", "_refusals")

    def __init__(self, manager: GuardedServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._head_timeout = manager.head_timeout
        self._refusals = manager.refusals
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = False  # bytes of a request head not yet complete have arrived
        self._linger: asyncio.TimerHandle | None = None  # the staged close after a 408

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._messages:
            # A head is complete. What follows is its body or a pipelined request, whose head
            # is timed from its next byte once it is the one awaited.
            self._cancel_head_timer()
            self._head_bytes = False
        elif data and self._awaiting_head():
            self._head_bytes = True
            if self._head_timer is None:
                self._arm_head_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_head_timer()
        self._cancel_linger()
        super().connection_lost(exc)

    async def shutdown(self, timeout: float | None = 15.0) -> None:  # noqa: ASYNC109 - aiohttp's signature
        """The server stops: a connection still lingering after its 408 closes now."""
        self._end_linger()
        await super().shutdown(timeout)

    def _arm_head_timer(self) -> None:
        if self._head_timeout > 0:
            self._head_timer = self._loop.call_later(self._head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _awaiting_head(self) -> bool:
        """True while no request is queued or being answered: the protocol's loop waits for
        the next head (the state aiohttp's own keep-alive timer closes in)."""
        waiter = self._waiter
        return waiter is not None and not waiter.done() and not self._messages

    def _head_timed_out(self) -> None:
        self._head_timer = None
        transport = self.transport
        if transport is None or self._force_close or self._close or not self._awaiting_head():
            return  # closing already, or a request is queued or being answered
        self._refusals.log(
            logging.INFO,
            "HTTP request head timed out",
            key="header_timeout",
            reason="header_timeout",
            bytes_received=self._head_bytes,
        )
        if not self._head_bytes or not transport.can_write_eof():
            self.force_close()
            return
        transport.write(_TIMEOUT_RESPONSE)
        # RFC 9112 section 9.6: half-close, so the 408 and then our FIN go out, and keep
        # reading (``data_received`` drops everything once ``_force_close`` is set) until the
        # client closes (``eof_received`` lets the transport close) or the linger ends.
        self._force_close = True
        if self._waiter is not None:
            self._waiter.cancel()
        transport.write_eof()
        self._linger = self._loop.call_later(LINGER_SECONDS, self._end_linger)

    def _cancel_linger(self) -> bool:
        """Stop the linger timer; False when none was running."""
        if self._linger is None:
            return False
        self._linger.cancel()
        self._linger = None
        return True

    def _end_linger(self) -> None:
        if self._cancel_linger():
            self.force_close()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """A request aiohttp refused (``status`` < 500: it could not be parsed) or whose
        handler failed outside our middleware: the one error shape, never ``message``
        (aiohttp's text quotes the request)."""
        if status < 500:
            reason = "malformed_request" if exc is None else type(exc).__name__
            self._refusals.log(
                logging.INFO, "HTTP request refused", key=reason, reason=reason, status=status
            )
        else:
            log.error(
                "HTTP request failed",
                exc_info=exc,
                extra={"status": status, HIDE_EXC_MESSAGE: True},
            )
        if request.writer.output_size > 0:
            # Part of an answer is on the wire already: only closing is left (as aiohttp does).
            raise ConnectionError("response already started")
        response = http_error(status) if status < 500 else internal_error(status)
        response.headers[hdrs.SERVER] = SERVER
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """aiohttp's own error logs (an exception while answering): frames, not messages.

        A body that cannot be read is the client's doing, not a failure: aiohttp reads what
        is left of it after the answer (its lingering close) and logs the same error again
        as "Unhandled exception"; it is one short refusal line instead.
        """
        exc = kw.get("exc_info")
        if isinstance(exc, RequestPayloadError | HttpProcessingError):
            reason = type(exc.__cause__ or exc).__name__
            self._refusals.log(logging.INFO, "HTTP request body refused", key=reason, reason=reason)
            return
        kw["extra"] = {**kw.get("extra", {}), HIDE_EXC_MESSAGE: True}
        self.logger.exception(*args, **kw)


class GuardedServer(web.Server):
    """The app's aiohttp ``Server``, making ``GuardedHandler`` connections."""

    def __init__(self, made: web.Server, head_timeout: float) -> None:
        factory = made.request_factory

        def make_request(
            message: RawRequestMessage,
            payload: StreamReader,
            protocol: web.RequestHandler,
            writer: AbstractStreamWriter,
            task: asyncio.Task[None],
        ) -> web.BaseRequest:
            return factory(_known_expectations(message), payload, protocol, writer, task)

        # Server keeps the handler's settings (access log, debug, limits) in ``_kwargs``: the
        # same ones, for the same handler class plus our checks.
        super().__init__(
            made.request_handler,
            request_factory=make_request,
            handler_cancellation=made.handler_cancellation,
            **made._kwargs,
        )
        self.head_timeout = head_timeout
        # One budget of refusal lines per server: ten a minute per reason, then a count.
        self.refusals = LimitedLog(log)

    def __call__(self) -> web.RequestHandler:
        return GuardedHandler(self, loop=self._loop, **self._kwargs)


def _known_expectations(message: RawRequestMessage) -> RawRequestMessage:
    """``message`` without an ``Expect`` field unless it is exactly ``100-continue``."""
    expect = message.headers.get(hdrs.EXPECT)
    if expect is None or (expect.isascii() and expect.lower() == "100-continue"):
        return message
    headers = CIMultiDict(
        (name, value) for name, value in message.headers.items() if name.lower() != "expect"
    )
    raw = tuple((name, value) for name, value in message.raw_headers if name.lower() != b"expect")
    return message._replace(headers=CIMultiDictProxy(headers), raw_headers=raw)


class GatewayRunner(web.AppRunner):
    """``web.AppRunner`` whose connections are ``GuardedHandler``s."""

    def __init__(self, app: web.Application, *, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._header_timeout = header_timeout

    async def _make_server(self) -> web.Server:
        return GuardedServer(await super()._make_server(), self._header_timeout)
