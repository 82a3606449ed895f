"""Recorded locations (I/O layer): ``PUT /v1/contacts/location`` (scope ``write``).

The send rules read a person's local time and jurisdiction from their area code (email:
``[rules] default_zone``) unless an operator records better: a state (ISO 3166-2, "US-NY")
or an IANA time zone ("America/New_York"). A recorded zone decides the hours; a recorded
state the jurisdiction and, without a zone, the hours in each of the state's zones; the
Florida, Oklahoma and Connecticut rules still reach their area codes (docs/rules.md, "Local
time" and "Jurisdiction").

Body ``{channel, contact, state?, time_zone?}``. It is a PUT: the body is the whole record,
so a field left out or null is cleared, and both null restore the area code. Values are
checked against the rules' own data (``rules.location``: a state the numbering data places
area codes in, a zone this machine's tz database has): anything else is 422
``invalid_state`` / ``invalid_time_zone``, an unknown field 400. An erased address is 422
``suppressed`` and an address no contact has 422 ``unknown_contact``, as the other requests
about a contact answer (gateway/edges/http/privacy.py). The store writes the audit log row,
naming the contact id; logs never carry the address (docs/DESIGN.md, invariant 8).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from gateway.addresses import legacy_email_key, normalize_address
from gateway.edges.http.auth import API, require
from gateway.edges.http.gate_api import parse_json
from gateway.edges.http.server import DEPS, BadRequest, channel_field, read_body, string_field
from gateway.errors import BadInput, TemporaryFailure
from keywords.model import Channel
from rules.location import known_state, valid_zone

log = logging.getLogger(__name__)

_FIELDS = frozenset({"channel", "contact", "state", "time_zone"})


def _optional(data: Mapping[str, Any], name: str) -> str | None:
    """An optional string field: absent or null is None."""
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"field {name!r} must be a string or null")
    return value


def parse(data: object) -> tuple[Channel, str, str | None, str | None]:
    """(channel, contact as given, state, zone) from a body, checked against the rules' data."""
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object")
    if not _FIELDS.issuperset(data):
        # A PUT clears what it leaves out: a misspelt field would clear the real one. The
        # answer names the fields taken, never the one sent (server.py: no input echoed).
        raise BadRequest("the body takes only channel, contact, state and time_zone")
    channel = channel_field(data)
    contact = string_field(data, "contact", max_len=254)
    state, zone = _optional(data, "state"), _optional(data, "time_zone")
    if state is not None and not known_state(state):
        raise BadInput(
            "field 'state' must be an ISO 3166-2 code the numbering data knows, like US-FL",
            code="invalid_state",
        )
    if zone is not None and not (len(zone) <= 64 and valid_zone(zone)):
        raise BadInput(
            "field 'time_zone' must be an IANA time zone, like America/New_York",
            code="invalid_time_zone",
        )
    return channel, contact, state, zone


async def put_location(request: web.Request) -> web.Response:
    """Record, replace or clear a contact's state and time zone."""
    principal = await require(request, "write")
    deps, api = request.app[DEPS], request.app[API]
    channel, contact, state, zone = parse(parse_json(await read_body(request, deps.max_body_bytes)))
    if api.locations is None:
        raise TemporaryFailure("recorded locations are not available on this instance")
    address = normalize_address(channel, contact, api.default_region)
    # Email: also the spelling as given, as suppression entries made before addresses were
    # case-folded were keyed (gateway/store/suppression.py).
    legacy = legacy_email_key(contact) if channel is Channel.EMAIL else None
    done = await api.locations.record(
        channel.value, address, state, zone, actor=principal.id, legacy=legacy
    )
    cleared = done.state is None and done.time_zone is None
    log.info(
        "contact location cleared" if cleared else "contact location recorded",
        extra={"contact_id": done.contact_id, "channel": channel.value, "actor": principal.id},
    )
    return web.json_response(
        {
            "status": "cleared" if cleared else "recorded",
            "contact_id": done.contact_id,
            "state": done.state,
            "time_zone": done.time_zone,
        }
    )


def register(app: web.Application) -> None:
    """Add the route."""
    app.router.add_put("/v1/contacts/location", put_location)
