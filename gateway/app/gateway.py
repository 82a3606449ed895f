"""Composition root (I/O layer): opens every resource in order and closes them in reverse.

``Gateway`` is an async context manager: entering it starts PostgreSQL (embedded when no
URL is given), migrates, opens the cache, the writer, the guard, the outbox worker and the
HTTP server; leaving it (SIGTERM in ``serve``: gateway/app/serve.py) stops accepting HTTP
first, drains the writer's queue so every request in flight gets its committed answer, then
closes the rest.

Every long-running loop starts through ``_spawn``, under the ``Supervisor``: a loop that
fails is restarted with backoff, one that keeps failing ends ``serve`` with a non-zero
status, and ``/readyz`` reports what is down (gateway/supervisor.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType

import asyncpg
import redis.asyncio as aioredis
from aiohttp import web

from gateway.app.api_wiring import ApiEdge, build_suppression
from gateway.app.config_check import check_settings
from gateway.app.email_wiring import EmailEdge
from gateway.catalogs import CatalogRegistry
from gateway.clock import Clock
from gateway.edges.http import inbound, ops
from gateway.edges.http.client_address import parse_networks, register_trusted
from gateway.edges.http.protocol import GatewayRunner
from gateway.edges.http.server import HttpDeps, build_app
from gateway.edges.smpp.edge import SmppEdge
from gateway.errors import ConfigError
from gateway.gate import SendGate
from gateway.health import Readiness
from gateway.merge import carry_case_collision_opt_outs
from gateway.metrics import Metrics
from gateway.outbox import OutboxWorker
from gateway.pipeline import Pipeline
from gateway.security.signing import WEBHOOK_PURPOSE, derive_key
from gateway.security.tokens import TokenCodec, TokenKeys
from gateway.send_rules import SendRules
from gateway.senders.base import OutboundSender
from gateway.settings import Settings
from gateway.store.cache import ConsentCache, LocalConsentCache, RedisConsentCache
from gateway.store.contact_locations import ContactLocations
from gateway.store.db import create_pool, embedded_postgres
from gateway.store.guard import CacheGuard
from gateway.store.instance_lock import InstanceLock, LockLost
from gateway.store.near import NearCache
from gateway.store.receipts import ReceiptStore
from gateway.store.sms_parts import SmsPartStore
from gateway.store.writer import ConsentWriter
from gateway.supervisor import Factory, Supervisor, SupervisorSettings
from keywords.catalog import SenderCatalog
from keywords.loading import load_catalogs
from keywords.model import Channel

log = logging.getLogger(__name__)

REUSE_PORT_ENV = "GATEWAY_REUSE_PORT"


def reuse_port(env: Mapping[str, str] = os.environ) -> bool:
    """True in a worker of ``--workers N``: its listeners share their ports."""
    return env.get(REUSE_PORT_ENV) == "1"


class Gateway:
    """One running gateway instance."""

    def __init__(
        self,
        settings: Settings,
        *,
        catalogs: Mapping[str, SenderCatalog] | None = None,
        senders: Mapping[str, OutboundSender] | None = None,
        serve_http: bool = True,
        supervision: SupervisorSettings | None = None,
        write_dev_key: bool = False,
    ) -> None:
        self.settings = settings
        # Every table checked before anything starts: a bad value is one line, exit 2.
        self.edge_settings = check_settings(settings)
        # The one live set of catalogs every part reads (gateway/catalogs.py).
        self.catalogs = CatalogRegistry(
            catalogs if catalogs is not None else load_catalogs(settings.senders_dir)
        )
        # The send rules: loaded and every program's categories checked before anything
        # starts (docs/rules.md); the clock is the system's unless a test sets its own.
        self.clock = Clock.from_env(settings.env)
        self.send_rules = SendRules(settings.rules, self.clock)
        problems = self.send_rules.problems(self.catalogs)
        if problems:
            raise ConfigError("; ".join(problems))
        # One token codec for every link and token this instance issues or reads.
        self.tokens = TokenCodec(
            TokenKeys.from_env(settings.env, settings.secret_key, settings.previous_secret_keys)
        )
        self.metrics = Metrics()
        self._senders = dict(senders or {})
        self._serve_http = serve_http
        self._stack = AsyncExitStack()
        self.supervisor = Supervisor(self.metrics, supervision)
        self._write_dev_key = write_dev_key
        self.http_port: int | None = None

    async def __aenter__(self) -> Gateway:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    async def _start(self) -> None:
        s = self.settings
        if self.clock.simulated:
            log.warning(
                "test clock in use: the send rules read a simulated time",
                extra={"now": self.clock.now().isoformat(), "rate": self.clock.rate},
            )
        # Pushed first, so it runs last: a safety net for any task still running then.
        self._stack.push_async_callback(self.supervisor.stop)
        dsn = s.database_url
        if dsn is None:
            s.require_embedded_allowed()
            data_dir = Path(s.database.embedded_data_dir)
            dsn = await self._stack.enter_async_context(embedded_postgres(data_dir))
            log.info("embedded PostgreSQL started", extra={"data_dir": str(data_dir)})
        self.pool: asyncpg.Pool = await create_pool(dsn, s.database)
        self._stack.push_async_callback(self.pool.close)
        # Without Redis this instance must be the only one on its schema (instance_lock.py).
        connect = lambda: asyncpg.connect(dsn, timeout=s.database.command_timeout_seconds)  # noqa: E731
        lock = InstanceLock(connect, s.database.schema, shared=s.redis_url is not None)
        await lock.acquire()
        self._stack.push_async_callback(lock.release)

        async def hold_lock() -> None:
            try:
                await lock.keep()
            except LockLost as exc:  # no longer sure to be alone: end, do not restart
                self.supervisor.give_up(str(exc))

        self._spawn("instance-lock", hold_lock, returns=True)
        # Before anything is written: refuses to start if erased people could not be matched.
        self.suppression = build_suppression(s)
        await self.suppression.prepare(self.pool)

        cache: ConsentCache
        if s.redis_url is not None:
            client = aioredis.Redis.from_url(
                s.redis_url,
                socket_timeout=s.cache.operation_timeout_seconds,
                socket_connect_timeout=s.cache.operation_timeout_seconds,
            )
            near = NearCache(
                RedisConsentCache(
                    client,
                    secret=s.secret_key,
                    prefix=s.cache.key_prefix,
                    entry_ttl=s.cache.entry_ttl_seconds,
                    tombstone_ttl=s.cache.tombstone_ttl_seconds,
                )
            )
            cache = near
        else:
            log.info("no GATEWAY_REDIS_URL: single instance with an in-process cache")
            cache = LocalConsentCache(entry_ttl=s.cache.entry_ttl_seconds)
        self._stack.push_async_callback(cache.close)
        if isinstance(cache, NearCache):
            self._spawn("near-cache", cache.run)  # stopped before the client closes
        self.cache = cache

        self.guard = CacheGuard(
            cache,
            self.pool,
            interval=s.cache.health_interval_seconds,
            metrics=self.metrics,
            channel=f"{s.database.schema}_cache_repair",
            connect=lambda: asyncpg.connect(dsn, timeout=s.database.command_timeout_seconds),
        )
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            await self.guard.poll_once()
        # While the guard's task is down nobody watches Redis: the gate reads Postgres.
        self._spawn("cache-guard", self.guard.run, on_down=self.guard.distrust)

        self.writer = ConsentWriter(
            self.pool,
            cache,
            self.guard,
            self.metrics,
            max_batch=s.pipeline.max_batch,
            suppression=self.suppression,
        )
        # The writer restarts nothing itself: a writer task that ended is a bug, and the
        # process ends (non-zero) rather than take events it cannot commit.
        self.writer.start(on_dead=self.supervisor.give_up)
        self._stack.push_async_callback(self.writer.stop)
        self.pipeline = Pipeline(
            self.catalogs,
            self.writer,
            self.metrics,
            default_region=s.pipeline.default_region,
            max_text_chars=s.pipeline.max_text_chars,
            revoke_all=s.rules.revoke_all,
        )
        # Migration 011's case collisions: their opt-outs reach the key before any send.
        await carry_case_collision_opt_outs(self.pool, self.pipeline, self.catalogs)
        self.gate = SendGate(
            self.pool,
            cache,
            self.guard,
            self.catalogs,
            self.metrics,
            suppressed=self.suppression.contains,
            default_region=s.pipeline.default_region,
            rules=self.send_rules,
            # Recorded states and zones; loaded, and kept current, by the API's change feed.
            locations=ContactLocations(
                self.pool, self.suppression, channel=f"{s.database.schema}_api"
            ),
        )
        self.email = EmailEdge(s, self.catalogs, self.pool, self.tokens)
        self._senders.update(self.email.senders(self._senders))
        self.smpp: SmppEdge | None = None
        if self.edge_settings.smpp is not None:
            self.smpp = SmppEdge(
                self.edge_settings.smpp,
                self.pipeline,
                ReceiptStore(self.pool),
                SmsPartStore(self.pool),
                senders=self.catalogs,
                on_reply_queued=lambda: self.outbox.wake(),
                on_bound=lambda: self.outbox.channel_ready("sms"),
            )
            self._senders.setdefault("sms", self.smpp.sender)
        self.api = ApiEdge(
            s, self.catalogs, self.pool, cache, self.guard, self.gate, self.suppression, self.tokens
        )
        self._senders.update(await self.api.senders(self._stack, self._senders))
        self.outbox = OutboxWorker(self.pool, self._senders, s.outbox, self.metrics)
        self._spawn("outbox", self.outbox.run)
        self._spawn("outbox-monitor", self.outbox.monitor)
        await self.api.start(
            self._spawn,
            lambda: asyncpg.connect(dsn, timeout=s.database.command_timeout_seconds),
            self.outbox.wake,
        )
        # Expired double opt-ins are swept whether or not this instance serves HTTP.
        self._spawn("pending-sweep", lambda: self.api.sweep_pending(self.pipeline))
        if self.smpp is not None:
            # Pushed after the writer and the outbox: on exit the binds close first.
            self.smpp.start(self._spawn)
            self.metrics.watch_binds(self.smpp.binds_up)
            self._stack.push_async_callback(self.smpp.close)
        self.readiness = Readiness(
            pool=self.pool,
            supervisor=self.supervisor,
            writer_running=self.writer.running,
            cache_usable=lambda: self.guard.usable,
            outbox=self.outbox,
            max_opt_out_age=s.outbox.max_opt_out_age_seconds,
            unbound_sms_senders=self._unbound_sms_senders,
            smtp_serving=self.email.smtp_serving,
        )
        if self._write_dev_key:
            # Everything that can fail on configuration has run: keep the key before the
            # first link or signature made with it can reach anyone (HTTP starts next).
            write_dev_secret(s)
        if self._serve_http:
            await self._start_http()
        # Pushed after the writer: on exit SMTP stops first, then the writer drains.
        self.smtp_port = await self.email.start(self._stack, self.pipeline, self._spawn)

    def _unbound_sms_senders(self) -> list[str]:
        """SMS senders whose replies leave by SMPP but that no bound session carries now."""
        if self.smpp is None:
            return []
        by_provider = set(self.api.twilio.senders)
        return [
            sender
            for sender, catalog in self.catalogs.items()
            if catalog.channel is Channel.SMS
            and sender not in by_provider
            and not self.smpp.sessions_for(sender)
        ]

    def _spawn(
        self,
        name: str,
        factory: Factory,
        *,
        returns: bool = False,
        on_down: Callable[[], None] | None = None,
    ) -> None:
        """Start a long-running loop under the supervisor; it stops in reverse order of start
        (its stop is pushed on the exit stack now, after what it depends on)."""
        self.supervisor.spawn(name, factory, returns=returns, on_down=on_down)
        self._stack.push_async_callback(self.supervisor.stop_one, name)

    async def _start_http(self) -> None:
        s = self.settings
        deps = HttpDeps(
            pipeline=self.pipeline,
            gate=self.gate,
            readiness=self.readiness,
            pool=self.pool,
            metrics=self.metrics,
            webhook_key=derive_key(s.secret_key, WEBHOOK_PURPOSE),
            webhook_previous_keys=tuple(
                derive_key(old, WEBHOOK_PURPOSE) for old in s.previous_secret_keys
            ),
            max_body_bytes=s.http.max_body_bytes,
            signature_tolerance=s.http.signature_tolerance_seconds,
            body_timeout=s.http.body_timeout_seconds,
        )
        trusted = register_trusted(parse_networks(s.http.trusted_proxies))
        modules = [trusted, ops.register, inbound.register, *self.api.http_modules()]
        modules.append(self.email.http_module())
        # GatewayRunner: malformed requests answered without echo, slow heads cut off
        # (gateway/edges/http/protocol.py).
        runner = GatewayRunner(
            build_app(deps, modules),
            header_timeout=s.http.header_timeout_seconds,
            access_log=None,
            shutdown_timeout=10.0,
        )
        await runner.setup()
        # Pushed after the writer: on exit HTTP stops first, then the writer drains.
        self._stack.push_async_callback(runner.cleanup)
        # A worker of `serve --workers N` shares the port with its siblings (app/workers.py).
        site = web.TCPSite(runner, s.http.host, s.http.port, reuse_port=reuse_port())
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.http_port = sockets[0].getsockname()[1] if sockets else s.http.port
        log.info("HTTP listening", extra={"host": s.http.host, "port": self.http_port})


def write_dev_secret(settings: Settings) -> None:
    """Write the development key once, where a local operator can sign test requests.

    Only ``serve`` calls this (through ``Gateway``), once the database, the cache and every
    edge's configuration are up and before HTTP serves: a start that failed on its
    configuration writes nothing. The file is created exclusively (``O_EXCL``, mode 0600) and never
    overwritten: every link, signature and suppression hash depends on this key.
    """
    path = settings.dev_secret_file
    if not settings.secret_key_is_ephemeral or path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        # Written by another process since our start: this one runs with another key.
        raise ConfigError(
            f"{path}: a development key appeared while starting; start again to use it"
        ) from exc
    with os.fdopen(fd, "wb") as out:
        out.write(settings.secret_key)
    log.warning(
        "GATEWAY_SECRET_KEY unset: using a random development key, written once",
        extra={"path": str(path)},
    )
