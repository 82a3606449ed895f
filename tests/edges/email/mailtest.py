"""Email edge test helpers: constants, the relay sink, a DKIM key type, gateway settings,
and the links of those settings built without a gateway.

The fixtures built on these live in ``email_fixtures.py``, which each test module loads with
``pytest_plugins`` (a ``conftest.py`` here would clash by name with other folders' ones).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from aiosmtpd.smtp import SMTP, Envelope, Session
from dnslib import QTYPE, RCODE, RR, TXT, DNSRecord  # type: ignore[import-untyped]
from dnslib.server import (  # type: ignore[import-untyped]  # dnslib ships no type hints
    BaseResolver,
    DNSHandler,
    DNSLogger,
    DNSServer,
)
from support import PG_URL, eventually, make_settings

from gateway.app import Gateway
from gateway.catalogs import CatalogRegistry
from gateway.email.links import UnsubscribeLinks
from gateway.security.tokens import TokenCodec, TokenKeys
from gateway.settings import OutboxSettings, Settings
from keywords.loading import load_catalogs

NEWS = "news@lists.acme-health.example"
DOMAIN = "lists.acme-health.example"
SUBSCRIBER = "Ann.Reader@Example.org"


@dataclasses.dataclass
class DkimKey:
    """An RSA key made for this test session and its DNS TXT record."""

    private_pem: bytes
    txt: bytes

    def dnsfunc(self, name: bytes, timeout: int = 5) -> bytes:
        """What dkimpy would read from DNS for ``<selector>._domainkey.<domain>``."""
        return self.txt if name.startswith(b"sel1._domainkey.acme-health.example") else b""


class ZoneServer(BaseResolver):  # type: ignore[misc]  # dnslib ships no type hints
    """A real DNS server on 127.0.0.1 (dnslib, UDP) answering from ``records``.

    Names it does not hold are NXDOMAIN, names it holds without the asked type are an empty
    answer, as a real authoritative server gives them.
    """

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list[bytes]] = {}
        self._server: Any = None
        self.port = 0

    def add_txt(self, name: str, value: bytes) -> None:
        """One TXT record at ``name`` (split in 255-octet strings, RFC 7208 section 3.3)."""
        self.records.setdefault((name.lower().rstrip(".") + ".", "TXT"), []).append(value)

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        reply = request.reply()
        name = str(request.q.qname).lower()
        found = self.records.get((name, QTYPE[request.q.qtype]))
        if found:
            for value in found:
                chunks = [value[i : i + 255] for i in range(0, len(value), 255)]
                reply.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT(chunks), ttl=60))
        elif not any(held == name for held, _ in self.records):
            reply.header.rcode = RCODE.NXDOMAIN
        return reply

    def start(self) -> None:
        self._server = DNSServer(
            self, address="127.0.0.1", port=0, logger=DNSLogger(logf=lambda _: None)
        )
        self._server.start_thread()
        self.port = self._server.server.server_address[1]

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server.server.server_close()
            self._server = None


# The test zone's DNS server: started for the session by email_fixtures.test_dns.
DNS = ZoneServer()


class RelaySink:
    """A local aiosmtpd server standing in for the mail relay; keeps every message."""

    def __init__(self) -> None:
        self.messages: list[Envelope] = []
        self.arrived = asyncio.Event()
        self.refuse_with: str | None = None
        self._server: asyncio.Server | None = None
        self.port = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        if self.refuse_with is not None:
            return self.refuse_with
        self.messages.append(envelope)
        self.arrived.set()
        return "250 2.0.0 queued"

    async def start(self, port: int = 0) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(self, hostname="relay.test", loop=loop), "127.0.0.1", port
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def wait_for(self, count: int) -> list[Envelope]:
        """Wait until ``count`` messages arrived (waits on an event, with a deadline)."""
        async with asyncio.timeout(20):
            while len(self.messages) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.messages


def mail_settings(base: Settings, *, relay_port: int | None = None, dkim: DkimKey | None = None,
                  smtp: dict[str, Any] | None = None) -> Settings:  # fmt: skip
    """``base`` with [smtp] on an ephemeral port and [email] links, relay and DKIM."""
    email: dict[str, Any] = {
        "public_base_url": "https://unsubscribe.acme-health.example",
        "unsubscribe_domain": DOMAIN,
        "bounce_address": f"bounces@{DOMAIN}",
        "postal_address": "Acme Health, 1 Main St, Springfield, IL 62701, USA",
    }
    env = dict(base.env)
    if relay_port is not None:
        email |= {"relay_host": "127.0.0.1", "relay_port": relay_port,
                  "relay_timeout_seconds": 5.0}  # fmt: skip
    if dkim is not None:
        email |= {"dkim_domain": "acme-health.example", "dkim_selector": "sel1"}
        env["GATEWAY_DKIM_PRIVATE_KEY"] = dkim.private_pem.decode()
    smtp_table = {"host": "127.0.0.1", "port": 0, "hostname": "mx.test", "domains": [DOMAIN],
                  "dns_servers": ["127.0.0.1"], "dns_port": DNS.port or 9,
                  "dns_timeout_seconds": 2.0}  # fmt: skip
    return dataclasses.replace(
        base,
        edges={**base.edges, "email": email, "smtp": {**smtp_table, **(smtp or {})}},
        env=env,
        outbox=OutboxSettings(
            poll_interval_seconds=0.05, backoff_base_seconds=0.1, backoff_max_seconds=0.3
        ),
    )


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Gateway]:
    """A gateway that is fully up, its cache guard's LISTEN connection included.

    Waiting for the LISTEN avoids a race in the guard: cancelled while it connects, it would
    leak that connection and pytest would fail the test on the ResourceWarning.
    """
    async with Gateway(settings) as gw:
        conn = await asyncpg.connect(PG_URL)
        try:
            await eventually(
                lambda: conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE query = $1",
                    f'LISTEN "{settings.database.schema}_cache_repair"',
                ),
                interval=0.01,
                message="the cache guard never LISTENed",
            )
        finally:
            await conn.close()
        yield gw


def offline_links() -> UnsubscribeLinks:
    """The links ``mail_settings`` gives a gateway, built without one: for the in-process
    tests, which start no database, no Redis and no gateway."""
    settings = mail_settings(make_settings("unused", "unused"))
    keys = TokenKeys.from_env(settings.env, settings.secret_key, settings.previous_secret_keys)
    catalogs = CatalogRegistry(load_catalogs(settings.senders_dir))
    return UnsubscribeLinks.from_settings(settings, catalogs, TokenCodec(keys))
