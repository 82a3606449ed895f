"""API access (I/O layer): what the API routes need, and scoped API keys on every request.

Keys are sent as ``Authorization: Bearer <key>``; a value that is not the RFC 6750 section
2.1 form (ASCII ``b64token``, at most 256 characters) is refused with 401 before any lookup,
so no other header bytes (non-UTF-8 ones arrive as surrogate escapes) reach the key store.
Scopes: ``read`` (gate checks), ``write`` (record consent, issue preference links), ``send``
(send-through), ``admin`` (programs and keywords, data-subject requests, the audit log);
``admin`` implies every other scope. Only the provider webhooks, the one-click URL and the
preference page go without a key: each carries its own signature. The key itself is never
logged; log lines name its public id.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from aiohttp import web

from gateway.edges.http.server import Handler, error_response
from gateway.security.tokens import TokenCodec
from keywords.catalog import SenderCatalog

SCOPES = ("read", "write", "send", "admin")
# RFC 6750 section 2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]{1,256}=*")


class Principal(Protocol):
    """An authenticated API key."""

    @property
    def id(self) -> str: ...

    @property
    def scopes(self) -> frozenset[str]: ...


class Keys(Protocol):
    """Looks a presented key up (hashed; see gateway/store/keys.py)."""

    async def authenticate(self, key: str) -> Principal | None: ...


class Privacy(Protocol):
    """Data-subject requests and the preference page's reads."""

    async def consent_of(self, channel: str, address: str) -> dict[tuple[str, str], str]: ...

    async def is_suppressed(self, channel: str, address: str) -> bool: ...

    async def export(self, channel: str, address: str, actor: str) -> dict[str, Any] | None: ...

    async def rectify(self, channel: str, old: str, new: str, actor: str) -> int: ...

    async def senders_of(self, channel: str, address: str) -> list[str]: ...

    async def erase(self, channel: str, address: str, actor: str) -> int | None: ...

    async def expired_pending(
        self, older_than_seconds: int, limit: int
    ) -> list[tuple[Any, ...]]: ...


class Sends(Protocol):
    """Gated sends: queued only while the person's consent allows them."""

    async def queue_send(
        self,
        channel: str,
        sender: str,
        program: str,
        address: str,
        body: str,
        *,
        recipient: str | None = None,
        not_before: datetime | None = None,
    ) -> int | str: ...

    async def queue_notice(
        self,
        channel: str,
        sender: str,
        program: str,
        address: str,
        body: str,
        *,
        recipient: str | None = None,
    ) -> int | None: ...


class LocationRecord(Protocol):
    """A recorded location as the store answers it (gateway/store/contact_locations.py)."""

    @property
    def contact_id(self) -> int: ...

    @property
    def state(self) -> str | None: ...

    @property
    def time_zone(self) -> str | None: ...


class Locations(Protocol):
    """A contact's recorded state and time zone, which the send rules read (docs/rules.md)."""

    async def record(
        self,
        channel: str,
        address: str,
        state: str | None,
        time_zone: str | None,
        *,
        actor: str,
        legacy: str | None = None,
    ) -> LocationRecord: ...


class Admin(Protocol):
    """Sender changes (validated like check-config, audited, broadcast) and the audit log."""

    async def update_sender(
        self, sender: str, definition: Mapping[str, Any], actor: str
    ) -> tuple[int, list[str]]: ...

    async def audit_log(self, limit: int) -> list[dict[str, Any]]: ...


class RulesApi(Protocol):
    """Operator rule documents (validated like ``[rules] operator_dir`` files, audited,
    broadcast) and the rule set served now."""

    async def summary(self) -> dict[str, Any]: ...

    async def put(self, name: str, document: str, actor: str) -> int: ...

    async def delete(self, name: str, actor: str) -> int | None: ...


@dataclass(frozen=True, slots=True)
class ApiDeps:
    """Everything the API modules use, built by gateway/app/api_wiring.py."""

    keys: Keys
    privacy: Privacy
    sends: Sends
    admin: Admin
    catalogs: Mapping[str, SenderCatalog]  # live: admin changes replace entries in place
    tokens: TokenCodec
    public_base_url: str  # root of the links we mail or text (preference page, confirm)
    link_ttl_seconds: int
    confirm_ttl_seconds: int  # double opt-in links expire (pending until confirmed)
    default_region: str
    wake_outbox: Callable[[], None]
    twilio_auth_token: str | None
    twilio_public_url: str  # the URL Twilio signs (ours as Twilio sees it)
    twilio_senders: Sequence[str] = ()
    max_send_segments: int = 10  # POST /v1/send: [api] max_send_segments
    max_send_email_chars: int = 32_768  # POST /v1/send: [api] max_send_email_chars
    rules: RulesApi | None = None  # None: a gate built without send rules
    locations: Locations | None = None  # PUT /v1/contacts/location; None: not offered


API = web.AppKey("api", ApiDeps)


class Forbidden(Exception):
    """The key lacks the scope (HTTP 403)."""


def has_scope(principal: Principal, scope: str) -> bool:
    """``admin`` holds every scope."""
    return scope in principal.scopes or "admin" in principal.scopes


async def require(request: web.Request, scope: str) -> Principal:
    """The request's key if it is live and holds ``scope``; raise otherwise."""
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    key = key.strip(" ")
    # The scheme is case-insensitive (RFC 9110 section 11.1), compared in ASCII only.
    if not (scheme.isascii() and scheme.lower() == "bearer") or not _B64TOKEN.fullmatch(key):
        raise web.HTTPUnauthorized
    principal = await request.app[API].keys.authenticate(key)
    if principal is None:
        raise web.HTTPUnauthorized
    if not has_scope(principal, scope):
        raise Forbidden(scope)
    return principal


@web.middleware
async def auth_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """401 / 403 in the API's one error shape (RFC 6750 section 3: ``WWW-Authenticate``)."""
    try:
        return await handler(request)
    except web.HTTPUnauthorized:
        return error_response(
            401, "unauthorized", "a valid API key is required", **{"WWW-Authenticate": "Bearer"}
        )
    except Forbidden as exc:
        return error_response(403, "forbidden", f"the API key lacks the {exc} scope")
