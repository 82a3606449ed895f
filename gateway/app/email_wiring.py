"""Email edge wiring (I/O layer): builds the one-click routes, the SMTP server and the sender.

Kept out of ``app.py`` so the composition root only calls three methods: ``senders`` (the
relay sender for channel ``email`` when ``[email] relay_host`` is set), ``http_module`` (the
one-click and header routes, always served) and ``start`` (revocation refresh, and the
inbound server when an ``[smtp]`` table exists, with its DNS resolver, mail authentication
and report provenance), which pushes its own shutdown on the stack.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack

import asyncpg

from gateway.catalogs import CatalogRegistry
from gateway.edges.http.server import Register
from gateway.edges.http.unsubscribe import UnsubscribeDeps, registrar
from gateway.edges.smtp.handler import InboundMailHandler
from gateway.edges.smtp.mailauth import MailAuthenticator, OwnKey
from gateway.edges.smtp.provenance import Provenance
from gateway.edges.smtp.resolver import MailResolver
from gateway.edges.smtp.server import start_smtp
from gateway.email.links import UnsubscribeLinks
from gateway.email.settings import smtp_settings
from gateway.pipeline import Pipeline
from gateway.security.tokens import TokenCodec
from gateway.senders.base import OutboundSender
from gateway.senders.email import EmailSender, dkim_key_from_env
from gateway.settings import Settings
from gateway.store.email_marks import EmailMarks
from gateway.store.email_reports import EmailReports

log = logging.getLogger(__name__)


class EmailEdge:
    """The email edge's parts for one gateway instance."""

    def __init__(
        self,
        settings: Settings,
        catalogs: CatalogRegistry,
        pool: asyncpg.Pool,
        tokens: TokenCodec,
    ) -> None:
        self.settings = settings
        # Reads the live registry: an admin change reaches links and mail at once.
        self.links = UnsubscribeLinks.from_settings(settings, catalogs, tokens)
        self.marks = EmailMarks(pool)
        self.reports = EmailReports(pool)
        self.smtp = smtp_settings(settings)
        self.smtp_port: int | None = None
        self.smtp_handler: InboundMailHandler | None = None
        https = self.links.settings.public_base_url.startswith("https://")
        if "email" in settings.edges and not https:
            # RFC 8058 section 3.1: the one-click URI must be HTTPS; mailbox providers ignore
            # an http one, so the button would not be offered.
            log.warning("email.public_base_url is not HTTPS: one-click buttons will not show")

    def senders(self, existing: Mapping[str, OutboundSender]) -> dict[str, OutboundSender]:
        """The relay sender for ``email`` when configured and none was injected."""
        if "email" in existing or not self.links.settings.relay_host:
            return {}
        env = self.settings.env
        return {
            "email": EmailSender(
                self.links,
                dkim_key=dkim_key_from_env(env),
                relay_password=env.get("GATEWAY_RELAY_PASSWORD"),
            )
        }

    def _own_key(self) -> OwnKey | None:
        """Our DKIM key's public half, to recognise our own signature in returned mail."""
        s = self.links.settings
        pem = dkim_key_from_env(self.settings.env)
        if not s.dkim_domain or pem is None:
            return None
        return OwnKey.from_private_pem(pem, s.dkim_domain, s.dkim_selector)

    def http_module(self) -> Register:
        """The ``register`` for the one-click, confirm-page and header-service routes."""
        return registrar(UnsubscribeDeps(self.links, self.marks))

    async def start(
        self,
        stack: AsyncExitStack,
        pipeline: Pipeline,
        spawn: Callable[[str, Callable[[], Awaitable[None]]], None],
    ) -> int | None:
        """Load revocations, keep them fresh (a supervised loop), and serve inbound SMTP if
        ``[smtp]`` is set.

        Returns the SMTP port (None without ``[smtp]``). Shutdown is pushed on ``stack``.
        """
        await self.marks.reload()
        spawn("email-revocations", self.marks.run)
        if self.smtp is None:
            return None
        resolver = MailResolver(
            self.smtp.dns_servers, port=self.smtp.dns_port, timeout=self.smtp.dns_timeout_seconds
        )
        authenticator = MailAuthenticator(resolver, timeout=self.smtp.auth_timeout_seconds)
        stack.callback(authenticator.close)
        handler = InboundMailHandler(
            pipeline.handle,
            self.links,
            self.marks,
            provenance=Provenance(
                self.links,
                self.reports,
                own_key=self._own_key(),
                feedback_loops=self.smtp.feedback_loops,
            ),
            reports=self.reports,
            authenticator=authenticator,
            domains=self.smtp.domains,
            max_recipients=self.smtp.max_recipients,
        )
        self.smtp_handler = handler
        server = await start_smtp(self.smtp, handler)
        stack.push_async_callback(server.close)
        self.server = server
        self.smtp_port = server.port
        return self.smtp_port

    def smtp_serving(self) -> bool | None:
        """Whether the SMTP server accepts connections (None: no ``[smtp]`` table)."""
        if self.smtp is None:
            return None
        server = getattr(self, "server", None)
        return server is not None and server.serving
