"""HTTP API wiring (I/O layer): settings, the SMS provider route, the stores and the live catalog.

Kept out of ``app.py`` so the composition root calls three things: ``senders`` (the
per-sender SMS route through a Twilio-compatible provider), ``start`` (load sender overrides
and the suppression list, then follow the change feed) and ``http_modules`` (the API routes).

Catalog changes made through the admin API on any instance reach this one by NOTIFY; the
catalogs mapping shared with the pipeline and the gate gets each new ``SenderCatalog`` (an
immutable value) swapped in by one synchronous assignment, so a request sees the old
catalog or the new one, never a mix.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import asyncpg

from gateway.app.audit_wiring import AuditEdge
from gateway.app.expiry_wiring import ExpiryEdge
from gateway.app.rules_wiring import RulesAdmin
from gateway.catalogs import CatalogRegistry
from gateway.config_rules import positive, ranged
from gateway.edges.http import (
    admin,
    auth,
    consent_api,
    gate_api,
    locations,
    openapi,
    preferences,
    privacy,
    webhooks,
)
from gateway.edges.http.auth import ApiDeps
from gateway.edges.http.server import Register
from gateway.errors import BadInput, ConfigError, GatewayError
from gateway.gate import SendGate
from gateway.messages import InboundMessage, Outcome
from gateway.security.signing import derive_key
from gateway.security.tokens import TokenCodec
from gateway.senders.base import OutboundSender
from gateway.senders.http_provider import HttpSmsProvider, RoutingSender
from gateway.settings import Settings, section
from gateway.storable import all_storable
from gateway.store.audit_log import AuditLog
from gateway.store.cache import ConsentCache
from gateway.store.change_feed import ChangeFeed
from gateway.store.guard import CacheGuard
from gateway.store.keys import ApiKeys
from gateway.store.privacy import PrivacyStore
from gateway.store.rule_overrides import RuleOverrides
from gateway.store.send_queue import SendQueue
from gateway.store.sender_overrides import SenderOverrides
from gateway.store.suppression import Suppression
from keywords.audit import audit
from keywords.catalog import SenderCatalog
from keywords.errors import CatalogError
from keywords.loading import load_sender

log = logging.getLogger(__name__)


class InboundPipeline(Protocol):
    """``gateway.pipeline.Pipeline`` as the API's background work sees it."""

    async def handle(self, message: InboundMessage) -> Outcome:
        """Commit ``message``."""


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """``[api]``: links we hand out."""

    # Root of preference-page and confirmation links, as people reach this gateway.
    public_base_url: str = "http://127.0.0.1:8080"
    # At most ten years: a token's expiry is three bytes of hours (gateway/security/tokens.py).
    preference_link_ttl_days: int = ranged(90, ge=1, le=3_650)
    # Double opt-in: an unconfirmed email link stops working after this (pending expires).
    confirm_ttl_hours: int = ranged(72, ge=1, le=87_600)
    # POST /v1/send: an SMS body longer than this many parts (GSM 03.38 or UCS-2, as
    # keywords/segments.py counts them) is refused; a concatenated SMS has at most 255 parts
    # (3GPP TS 23.040 section 9.2.3.24.1: the part count is one octet).
    max_send_segments: int = ranged(10, ge=1, le=255, why="3GPP TS 23.040: 255 parts at most")
    # POST /v1/send: the longest email body, in characters.
    max_send_email_chars: int = ranged(32_768, ge=1)


@dataclass(frozen=True, slots=True)
class TwilioSettings:
    """``[providers.twilio]``: a Twilio-compatible provider (token: GATEWAY_TWILIO_AUTH_TOKEN)."""

    base_url: str = "https://api.twilio.com"
    account_sid: str = ""
    # Our webhook URL's root as the provider calls it (it signs that URL, not ours).
    public_url: str = "http://127.0.0.1:8080"
    # SMS replies from these senders leave through this provider instead of SMPP.
    senders: tuple[str, ...] = ()
    timeout_seconds: float = positive(10.0)


def _tuples(raw: object) -> object:
    if isinstance(raw, Mapping):
        return {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    return raw


def parse_api(settings: Settings) -> tuple[ApiSettings, TwilioSettings]:
    """The ``[api]`` and ``[providers]`` tables, checked."""
    path = settings.config_path
    api = section(ApiSettings, settings.edges.get("api"), "api", path)
    providers = settings.edges.get("providers", {})
    unknown = sorted(set(providers) - {"twilio"})
    if unknown:
        raise ConfigError(f"{path}: providers.{unknown[0]}: unknown provider")
    twilio = section(TwilioSettings, _tuples(providers.get("twilio")), "providers.twilio", path)
    for name, url in (("api.public_base_url", api.public_base_url),
                      ("providers.twilio.public_url", twilio.public_url)):  # fmt: skip
        if not url.startswith(("https://", "http://")) or url.endswith("/"):
            raise ConfigError(f"{path}: {name}: an http(s) URL without a trailing slash")
    if twilio.senders and not (
        twilio.account_sid and settings.env.get("GATEWAY_TWILIO_AUTH_TOKEN")
    ):
        raise ConfigError(
            f"{path}: providers.twilio.senders needs account_sid and GATEWAY_TWILIO_AUTH_TOKEN"
        )
    return api, twilio


class CatalogAdmin:
    """Validates sender definitions like check-config, stores them and swaps them in."""

    def __init__(
        self, overrides: SenderOverrides, audit_log: AuditLog, catalogs: CatalogRegistry
    ) -> None:
        self._overrides = overrides
        self._audit_log = audit_log
        self._catalogs = catalogs

    @staticmethod
    def validate(sender: str, definition: Mapping[str, Any]) -> tuple[SenderCatalog, list[str]]:
        """The catalog, or ``BadInput`` naming the first schema error or every audit error."""
        if not all_storable(definition):
            raise BadInput(
                "the definition holds characters that cannot be stored (NUL or a lone surrogate)",
                code="invalid_sender",
            )
        try:
            # Named "admin", not after the URL's sender: an error never quotes the path back.
            catalog = load_sender(definition, "admin")
        except CatalogError as exc:
            raise BadInput(str(exc), code="invalid_sender") from exc
        if catalog.sender != sender:
            raise BadInput("the definition's sender differs from the URL", code="invalid_sender")
        findings = audit(catalog)
        errors = [f"{f.key}: {f.message}" for f in findings if f.severity == "error"]
        if errors:
            raise BadInput("; ".join(errors), code="invalid_sender")
        return catalog, [f"{f.key}: {f.message}" for f in findings]

    async def update_sender(
        self, sender: str, definition: Mapping[str, Any], actor: str
    ) -> tuple[int, list[str]]:
        """Validate, store (audited, announced) and serve the new definition here at once."""
        catalog, warnings = self.validate(sender, definition)
        current = self._catalogs.get(sender)
        if current is not None and current.channel is not catalog.channel:
            raise BadInput("a sender cannot change channel", code="invalid_sender")
        revision = await self._overrides.save_sender(sender, definition, actor=actor)
        self._catalogs.replace(sender, catalog)
        log.info("sender updated", extra={"sender": sender, "revision": revision, "actor": actor})
        return revision, warnings

    async def reload(self) -> None:
        """Swap in every stored definition (after a NOTIFY or a reconnect)."""
        for sender, definition in (await self._overrides.sender_overrides()).items():
            try:
                catalog, _ = self.validate(sender, definition)
            except BadInput as exc:
                log.error("stored sender invalid; kept the old one", extra={"sender": sender,
                          "error": exc.message})  # fmt: skip
                continue
            if self._catalogs.get(sender) != catalog:
                self._catalogs.replace(sender, catalog)

    async def audit_log(self, limit: int) -> list[dict[str, Any]]:
        """The newest audit records."""
        return await self._audit_log.audit_log(limit)


_SUPPRESSION_PURPOSE = "suppression"


def build_suppression(settings: Settings) -> Suppression:
    """The suppression list's keys: ``GATEWAY_SUPPRESSION_KEYS`` (``name:secret,...``, long
    lived, independent of the gateway secret) and the keys derived from the current and
    previous gateway secrets; every one is checked and every new entry is stored under all
    of them (gateway/store/suppression.py, README "Keys and rotation")."""
    own: list[bytes] = []
    names: set[str] = set()
    for item in settings.env.get("GATEWAY_SUPPRESSION_KEYS", "").split(","):
        if not item.strip():
            continue
        name, sep, secret = item.strip().partition(":")
        if not sep or not name or name in names:
            raise ConfigError("GATEWAY_SUPPRESSION_KEYS: expected name:secret[,name:secret...]")
        if len(secret.encode()) < 32:
            raise ConfigError(f"GATEWAY_SUPPRESSION_KEYS: key {name}: at least 32 bytes")
        names.add(name)
        own.append(derive_key(secret.encode(), _SUPPRESSION_PURPOSE))
    current = derive_key(settings.secret_key, _SUPPRESSION_PURPOSE)
    previous = [derive_key(s, _SUPPRESSION_PURPOSE) for s in settings.previous_secret_keys]
    return Suppression(
        [*own, current, *previous],
        adopt=current,
        notify_channel=f"{settings.database.schema}_api",
    )


class ApiEdge:
    """The HTTP API's parts for one gateway instance."""

    def __init__(
        self,
        settings: Settings,
        catalogs: CatalogRegistry,
        pool: asyncpg.Pool,
        cache: ConsentCache,
        guard: CacheGuard,
        gate: SendGate,
        suppression: Suppression,
        tokens: TokenCodec,
    ) -> None:
        self.settings = settings
        self.api_settings, self.twilio = parse_api(settings)
        self.channel = f"{settings.database.schema}_api"
        self.pool = pool
        self.catalogs = catalogs
        self.store = ApiKeys(pool, channel=self.channel)
        self.suppression = suppression
        self.privacy = PrivacyStore(
            pool, cache, guard, self.suppression, notify_channel=self.channel
        )
        self.sends = SendQueue(pool, self.suppression)
        self.admin = CatalogAdmin(
            SenderOverrides(pool, channel=self.channel), AuditLog(pool), catalogs
        )
        # Send rules changed through the admin API (gateway/app/rules_wiring.py): on the
        # gate's own SendRules, so a swap reaches every gate request from then on.
        self.rules = (
            None
            if gate.rules is None
            else RulesAdmin(
                settings.rules, RuleOverrides(pool, channel=self.channel), gate.rules, catalogs
            )
        )
        self.audit = AuditEdge(settings, pool, catalogs)
        self.expiry = ExpiryEdge(settings, pool, catalogs)  # docs/rules.md, consent duration
        self.locations = gate.locations  # recorded states and zones, shared with the gate
        self.tokens = tokens
        self._wake: Callable[[], None] = lambda: None
        self.app: Any = None

    async def senders(
        self, stack: AsyncExitStack, existing: Mapping[str, OutboundSender]
    ) -> dict[str, OutboundSender]:
        """The SMS route: listed senders through the HTTP provider, the rest as before."""
        if not self.twilio.senders:
            return {}
        session = aiohttp.ClientSession()
        stack.push_async_callback(session.close)
        provider = HttpSmsProvider(
            session,
            base_url=self.twilio.base_url,
            account_sid=self.twilio.account_sid,
            auth_token=self.settings.env["GATEWAY_TWILIO_AUTH_TOKEN"],
            timeout_seconds=self.twilio.timeout_seconds,
        )
        routes = dict.fromkeys(self.twilio.senders, provider)
        return {"sms": RoutingSender(routes, existing.get("sms"))}

    async def _on_change(self, topic: str) -> None:
        if topic in ("senders", "*"):
            await self.admin.reload()
        if topic in ("rules", "*") and self.rules is not None:
            await self.rules.reload()
        if topic in ("suppression", "*"):
            await self.suppression.load(self.pool)
        if topic in ("keys", "*"):
            self.store.forget_keys()
        if topic in ("locations", "*") and self.locations is not None:
            await self.locations.load()

    async def start(
        self,
        spawn: Callable[[str, Callable[[], Awaitable[None]]], None],
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        wake_outbox: Callable[[], None],
    ) -> None:
        """Load what the database holds now, then follow changes from other instances."""
        self._wake = wake_outbox
        if self.rules is not None:
            await self.rules.load()  # before HTTP serves a gate answer (a bad set stops here)
        await self._on_change("*")
        feed = ChangeFeed(connect, self.channel, self._on_change)
        spawn("api-change-feed", feed.run)
        spawn("ledger-checkpoints", self.audit.checkpoint_loop)  # docs/receipts.md

    async def expire_pending(self, pipeline: InboundPipeline) -> int:
        """Close the double opt-ins left unconfirmed past ``confirm_ttl_hours`` once."""
        return await consent_api.expire_pending(
            pipeline, self.privacy, self.catalogs, self.api_settings.confirm_ttl_hours * 3_600
        )

    async def sweep_pending(self, pipeline: InboundPipeline) -> None:
        """Sweep expired double opt-ins every ``SWEEP_SECONDS`` (a supervised loop)."""
        while True:
            try:
                await self.expire_pending(pipeline)
            except GatewayError as exc:
                log.warning("pending sweep failed; retrying", extra={"reason": exc.code})
            await asyncio.sleep(consent_api.SWEEP_SECONDS)  # a timer, not a synchronization

    def http_modules(self) -> list[Register]:
        """The API's routes, with their dependencies in the app."""
        deps = ApiDeps(
            keys=self.store,
            privacy=self.privacy,
            sends=self.sends,
            admin=self.admin,
            rules=self.rules,
            catalogs=self.catalogs,
            tokens=self.tokens,
            public_base_url=self.api_settings.public_base_url,
            link_ttl_seconds=self.api_settings.preference_link_ttl_days * 86_400,
            confirm_ttl_seconds=self.api_settings.confirm_ttl_hours * 3_600,
            default_region=self.settings.pipeline.default_region,
            wake_outbox=lambda: self._wake(),
            twilio_auth_token=self.settings.env.get("GATEWAY_TWILIO_AUTH_TOKEN"),
            twilio_public_url=self.twilio.public_url,
            twilio_senders=self.twilio.senders,
            max_send_segments=self.api_settings.max_send_segments,
            max_send_email_chars=self.api_settings.max_send_email_chars,
            locations=self.locations,
        )

        def register(app: Any) -> None:
            self.app = app  # kept for tests and tools that call the edge's tasks directly
            app[auth.API] = deps
            app.middlewares.append(auth.auth_errors)

        return [
            register,
            gate_api.register,
            webhooks.register,
            consent_api.register,
            locations.register,
            preferences.register,
            privacy.register,
            admin.register,
            self.audit.http_module(),
            self.expiry.http_module(),
            openapi.register,
        ]
