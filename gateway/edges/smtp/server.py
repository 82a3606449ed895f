"""Inbound SMTP server (I/O layer): aiosmtpd's protocol served by ``loop.create_server``.

The server runs on the gateway's own event loop (as aiosmtpd's ``main.py`` does), not in the
threaded ``Controller``, so the handler awaits the pipeline directly. aiosmtpd caps neither
connections nor recipients: connections past ``max_connections``, or past
``max_connections_per_client`` from one address, get ``421 4.7.0`` and are closed (RFC 5321
section 3.8 lets a server refuse service this way); recipients are capped in the handler.
A client silent for ``idle_before_mail_seconds`` before MAIL (``idle_seconds`` after it) is
told ``421 4.4.2`` and closed. The banner names the host and ``ESMTP``, no software or
version. STARTTLS (RFC 3207) is offered when a certificate is configured.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import ssl
from typing import Any

from aiosmtpd.smtp import SMTP

from gateway.edges.smtp.handler import InboundMailHandler
from gateway.email.settings import SmtpSettings

log = logging.getLogger(__name__)


class _Slots:
    """Connections in use, in all and by client address, shared by every protocol instance
    of one server."""

    def __init__(self, limit: int, per_client: int) -> None:
        self.limit = limit
        self.per_client = per_client
        self.used = 0
        self.by_client: dict[str, int] = {}
        self.live: set[asyncio.BaseTransport] = set()

    def refusal(self, client: str) -> bytes | None:
        """The 421 line for a connection past a limit, or None to take a slot."""
        if self.used >= self.limit:
            return b"421 4.7.0 Too many connections, try again later\r\n"
        if self.by_client.get(client, 0) >= self.per_client:
            return b"421 4.7.0 Too many connections from your address\r\n"
        return None

    def take(self, client: str, transport: asyncio.BaseTransport) -> None:
        self.used += 1
        self.by_client[client] = self.by_client.get(client, 0) + 1
        self.live.add(transport)

    def give_back(self, client: str, transport: asyncio.BaseTransport) -> None:
        self.used -= 1
        left = self.by_client.get(client, 1) - 1
        if left:
            self.by_client[client] = left
        else:
            self.by_client.pop(client, None)  # the map holds only addresses connected now
        self.live.discard(transport)


# ``<local@domain>`` of RFC 5321 section 4.1.2 in its everyday form: a dot-atom on each side,
# ASCII atext only (RFC 5322 section 3.2.3), nothing quoted, no comments, no source route.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_PATH = re.compile(rf"<({_ATEXT}(?:\.{_ATEXT})*@{_ATEXT}(?:\.{_ATEXT})*)>")


class _LimitedSMTP(SMTP):
    """aiosmtpd's SMTP with connection caps, two idle timeouts and a fast path for plain
    addresses."""

    def __init__(
        self,
        handler: InboundMailHandler,
        slots: _Slots,
        *,
        idle_before_mail: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, **kwargs)
        self._handler = handler
        self._slots = slots
        self._holds_slot = False
        self._client = ""
        self._idle_before_mail = idle_before_mail
        self._deadline = 0.0  # loop time at which an idle connection is closed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        starttls = self._original_transport is not None  # the TLS layer re-enters here
        super().connection_made(transport)
        if starttls:
            return
        peer = transport.get_extra_info("peername")
        self._client = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        refusal = self._slots.refusal(self._client)
        if refusal is not None:
            if self._handler_coroutine is not None:
                self._handler_coroutine.cancel()
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(refusal)
            transport.close()
            return
        self._slots.take(self._client, transport)
        self._transport_held: asyncio.BaseTransport = transport
        self._holds_slot = True

    async def handle_exception(self, error: Exception) -> str:
        """A command raised: the handler logs it and gives the answer, naming nothing."""
        return await self._handler.command_failed(error, self._client)

    def _reset_timeout(self, duration: float | None = None) -> None:
        """aiosmtpd restarts one timer on each command; before MAIL (``envelope.mail_from``
        unset, also again after each mail) it runs the shorter ``idle_before_mail``.

        The timer is lazy: a command only moves ``_deadline``, and a timer already due no
        later than the new deadline stays; when it fires early, ``_timeout_cb`` re-arms it
        for the rest. aiosmtpd cancels and schedules a new timer on every command (four or
        five per mail), and each cancelled one stays in the loop's heap until it is swept;
        here a mail costs one timer. A deadline that moves earlier (back to the short one
        after a mail) replaces the timer."""
        if duration is None:
            envelope = getattr(self, "envelope", None)
            if envelope is None or envelope.mail_from is None:
                duration = self._idle_before_mail
        deadline = self.loop.time() + (duration or self._timeout_duration)
        self._deadline = deadline
        handle = self._timeout_handle
        if handle is not None and not handle.cancelled() and handle.when() <= deadline:
            return
        if handle is not None:
            handle.cancel()
        self._timeout_handle = self.loop.call_at(deadline, self._timeout_cb)

    async def smtp_MAIL(self, arg: str) -> None:  # noqa: N802 - aiosmtpd's command method
        """MAIL as aiosmtpd runs it; a MAIL it accepted then starts the longer timer."""
        await super().smtp_MAIL(arg)
        if self.envelope is not None and self.envelope.mail_from is not None:
            self._reset_timeout()

    async def smtp_DATA(self, arg: str) -> None:  # noqa: N802 - aiosmtpd's command method
        """DATA as aiosmtpd runs it; the mail done, the short timer before MAIL runs again
        (aiosmtpd set the timer before the command, while the transaction was open)."""
        await super().smtp_DATA(arg)
        self._rearm_after_transaction()

    async def smtp_RSET(self, arg: str) -> None:  # noqa: N802 - aiosmtpd's command method
        """RSET as aiosmtpd runs it; the transaction gone, the short timer runs again."""
        await super().smtp_RSET(arg)
        self._rearm_after_transaction()

    def _rearm_after_transaction(self) -> None:
        envelope = self.envelope
        if self.transport is not None and (envelope is None or envelope.mail_from is None):
            self._reset_timeout()

    def _timeout_cb(self) -> None:
        """Re-arm a timer that fired before the deadline a later command set; at the
        deadline say why before closing (RFC 5321 section 3.8: 421 and close), not a bare
        close."""
        if self.loop.time() < self._deadline:
            self._timeout_handle = self.loop.call_at(self._deadline, self._timeout_cb)
            return
        transport = self.transport
        if isinstance(transport, asyncio.WriteTransport) and not transport.is_closing():
            transport.write(b"421 4.4.2 Idle too long, closing connection\r\n")
        super()._timeout_cb()  # type: ignore[no-untyped-call]  # aiosmtpd leaves it untyped

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """The path of a MAIL or RCPT command and what follows it, as aiosmtpd returns them.

        aiosmtpd (1.4.6) runs every path through the email package's RFC 5322 parser and
        defines a class on each call: about a fifth of this server's CPU per mail. A plain
        ``<local@domain>`` gets the same answer from one regular expression; anything else
        (quoting, comments, ``<>``, non-ASCII, leading blanks) goes to aiosmtpd. A property
        test holds the two answers equal (tests/edges/email/test_email_smtp_paths.py).
        """
        match = _PLAIN_PATH.match(arg)
        if match is None:
            return super()._getaddr(arg)
        rest = arg[match.end() :]
        if rest[:1] in (" ", "\t"):
            # The parser takes the blanks after ">" as CFWS (all leading whitespace, then
            # any comment): only a comment needs it.
            rest = rest.lstrip()
        if rest[:1] == "(":
            return super()._getaddr(arg)
        address = match.group(1)
        if self.local_part_limit and address.rindex("@") > self.local_part_limit:
            return None, None
        return address, rest

    def connection_lost(self, error: Exception | None) -> None:
        if self._holds_slot:
            self._holds_slot = False
            self._slots.give_back(self._client, self._transport_held)
        super().connection_lost(error)


def tls_context(settings: SmtpSettings) -> ssl.SSLContext | None:
    """A server context for STARTTLS, or None without a certificate."""
    if not settings.tls_cert_file:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    return context


class RunningSmtp:
    """A listening SMTP server; ``close`` stops accepting and drops open sessions."""

    def __init__(self, server: asyncio.Server, slots: _Slots) -> None:
        self._server = server
        self._slots = slots

    @property
    def serving(self) -> bool:
        """True while the listening socket accepts connections."""
        return self._server.is_serving()

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        """Stop listening, then close sessions: a mail not yet answered 250 is retried by
        its sender (RFC 5321 section 4.5.4.1), and dedupe makes the retry harmless."""
        self._server.close()
        for transport in list(self._slots.live):
            transport.close()
        await self._server.wait_closed()


async def start_smtp(settings: SmtpSettings, handler: InboundMailHandler) -> RunningSmtp:
    """Listen on ``settings.host:port`` and serve ``handler``; the caller closes it."""
    # aiosmtpd logs every command line at INFO and unknown commands at WARNING, verbatim
    # (addresses, tokens, whatever a client types): none of it reaches our logs. Its ERROR
    # lines are its own failures; ours are written by InboundMailHandler.command_failed.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    loop = asyncio.get_running_loop()
    slots = _Slots(settings.max_connections, settings.max_connections_per_client)
    context = tls_context(settings)
    hostname = settings.hostname or socket.getfqdn()

    def factory() -> _LimitedSMTP:
        return _LimitedSMTP(
            handler,
            slots,
            hostname=hostname,
            data_size_limit=settings.max_message_bytes,
            enable_SMTPUTF8=True,
            tls_context=context,
            timeout=settings.idle_seconds,
            idle_before_mail=settings.idle_before_mail_seconds,
            ident="ESMTP",  # the banner is "220 <hostname> ESMTP": no software, no version
            loop=loop,
        )

    server = await loop.create_server(factory, settings.host, settings.port)
    running = RunningSmtp(server, slots)
    log.info("SMTP listening", extra={"host": settings.host, "port": running.port})
    return running
