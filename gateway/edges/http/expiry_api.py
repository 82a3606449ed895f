"""Consent that lapses soon, over HTTP (I/O layer): ``GET /v1/consent/expiring?days=N
[&sender=S]`` (scope ``read``).

The answer lists every opted-in consent whose basis expires in ``[now, now + N days)``,
soonest first, each with channel, sender, program, address, basis, since and expires_at
(docs/rules.md, "Consent duration"): what a renewal campaign asking for express consent
needs before implied consent lapses. ``days`` is a whole number 0..3650 and required; an
unknown sender is 422 ``unknown_sender``. The composition root
(gateway/app/expiry_wiring.py) puts an ``ExpiryService`` in the app; this module reaches no
store. Nothing here logs an address.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import orjson
from aiohttp import web

from gateway.edges.http.auth import require
from gateway.edges.http.server import BadRequest, query_int
from gateway.errors import BadInput
from keywords.catalog import SenderCatalog

MAX_DAYS = 3_650  # the same bound as gateway/store/consent_expiry.py


class Expiring(Protocol):
    """One listed consent."""

    def as_json(self) -> dict[str, str]: ...


class ExpiryService(Protocol):
    """The listing (gateway/store/consent_expiry.py ``ConsentExpiry``)."""

    async def expiring(self, days: int, sender: str | None, at: datetime) -> Sequence[Expiring]: ...


@dataclass(frozen=True, slots=True)
class ExpiryDeps:
    """What the route uses: the listing and the live catalogs (to name unknown senders)."""

    service: ExpiryService
    catalogs: Mapping[str, SenderCatalog]


EXPIRY = web.AppKey("expiry", ExpiryDeps)


def _sender(request: web.Request) -> str | None:
    values = request.query.getall("sender", [])
    if not values:
        return None
    if len(values) > 1 or not values[0] or len(values[0]) > 254:
        raise BadRequest("query parameter 'sender' must be given once, non-empty")
    return values[0]


async def expiring(request: web.Request) -> web.Response:
    """The consents lapsing within ``days``, as one JSON document."""
    await require(request, "read")
    if not request.query.getall("days", []):
        raise BadRequest(f"query parameter 'days' is required (a whole number 0..{MAX_DAYS})")
    days = query_int(request, "days", default=0, low=0, high=MAX_DAYS)
    sender = _sender(request)
    deps = request.app[EXPIRY]
    if sender is not None and sender not in deps.catalogs:
        raise BadInput("unknown sender", code="unknown_sender")
    at = datetime.now(UTC)
    items = await deps.service.expiring(days, sender, at)
    document = {
        "at": at.isoformat(),
        "days": days,
        "sender": sender,
        "items": [item.as_json() for item in items],
    }
    return web.Response(body=orjson.dumps(document), content_type="application/json")


def register(app: web.Application) -> None:
    """Add the route (the wiring puts ``EXPIRY`` in the app first)."""
    app.router.add_get("/v1/consent/expiring", expiring)
