"""Data-subject rights (I/O layer): export, rectify and erase one contact (scope ``admin``).

- ``POST /v1/privacy/export`` ``{channel, contact}``: everything held, the ledger included,
  as JSON (GDPR art. 15, right of access; art. 20 wants a machine-readable format).
- ``POST /v1/privacy/rectify`` ``{channel, contact, new_contact}``: a changed number or
  address; the old one stays in the contact's history (art. 16).
- ``POST /v1/privacy/erase`` ``{channel, contact}``: first an opt-out of every program on
  every sender through the pipeline (method ``erasure``, ledger events, no reply sent), then
  the contact is pseudonymised and its bodies and evidence redacted, while a keyed hash stays
  on the suppression list so the person is never messaged again (art. 17 with 21(3): an
  objection to direct marketing is absolute; ICO: keep objectors on a suppression list).

Each request is recorded in the audit log by the store, naming the contact id, not the address.
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from gateway.addresses import normalize_address
from gateway.edges.http.audit_deps import AUDIT
from gateway.edges.http.auth import API, require
from gateway.edges.http.gate_api import parse_json
from gateway.edges.http.server import DEPS, BadRequest, channel_field, read_body, string_field
from gateway.errors import BadInput
from gateway.messages import InboundMessage, Method
from keywords.model import Channel, IntentKind


async def _subject(request: web.Request) -> tuple[str, Channel, str, dict[str, Any]]:
    principal = await require(request, "admin")
    deps, api = request.app[DEPS], request.app[API]
    data = parse_json(await read_body(request, deps.max_body_bytes))
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object")
    channel = channel_field(data)
    address = normalize_address(
        channel, string_field(data, "contact", max_len=254), api.default_region
    )
    return principal.id, channel, address, data


async def export(request: web.Request) -> web.Response:
    """All data on one contact, or 404."""
    actor, channel, address, _ = await _subject(request)
    data = await request.app[API].privacy.export(channel.value, address, actor)
    if data is None:
        raise BadInput("no contact with that address", code="unknown_contact")
    audit = request.app.get(AUDIT)
    if audit is not None:  # the same consent receipt, with its proofs (docs/receipts.md)
        data["receipt"] = await audit.service.receipt(data["contact"]["id"])
    return web.json_response(data)


async def rectify(request: web.Request) -> web.Response:
    """Move a contact to a new address, keeping the old one in its history."""
    actor, channel, address, data = await _subject(request)
    api = request.app[API]
    new = normalize_address(
        channel, string_field(data, "new_contact", max_len=254), api.default_region
    )
    if await api.privacy.is_suppressed(channel.value, new):
        raise BadInput("the new address was erased and is never messaged again", code="suppressed")
    contact_id = await api.privacy.rectify(channel.value, address, new, actor)
    return web.json_response({"status": "rectified", "contact_id": contact_id})


async def erase(request: web.Request) -> web.Response:
    """Opt out everywhere, then pseudonymise and suppress."""
    actor, channel, address, _ = await _subject(request)
    deps, api = request.app[DEPS], request.app[API]
    request_id = uuid.uuid4().hex
    seqs: list[int] = []
    for sender in await api.privacy.senders_of(channel.value, address):
        if sender not in api.catalogs:
            continue  # a retired sender: the gate refuses it anyway
        outcome = await deps.pipeline.handle(
            InboundMessage.decided(
                channel=channel,
                sender=sender,
                contact=address,
                method=Method.ERASURE,
                dedupe_key=f"erasure:{request_id}:{sender}",
                kind=IntentKind.OPT_OUT_ALL,
                evidence={"request": request_id, "api_key": actor},
                suppress_replies=True,  # the person asked us to forget them, not to write
            )
        )
        seqs.extend(outcome.ledger_seqs)
    contact_id = await api.privacy.erase(channel.value, address, actor)
    return web.json_response(
        {"status": "erased", "contact_id": contact_id, "ledger_seqs": seqs, "request": request_id}
    )


def register(app: web.Application) -> None:
    """Add the routes."""
    app.router.add_post("/v1/privacy/export", export)
    app.router.add_post("/v1/privacy/rectify", rectify)
    app.router.add_post("/v1/privacy/erase", erase)
