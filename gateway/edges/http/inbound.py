"""Signed JSON inbound SMS (I/O layer): ``POST /v1/inbound/sms`` ``{id, from, to, text}``.

The sender signs the body (``X-Gateway-Signature``, see signing.py). 200 only after the
commit; a redelivery of the same ``id`` answers 200 with ``status: duplicate`` and writes
nothing (docs/DESIGN.md, invariants 1 and 3).
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from gateway.edges.http.client_address import client_address
from gateway.edges.http.server import DEPS, BadRequest, signed_json, string_field
from gateway.messages import InboundMessage, Method
from keywords.model import Channel


def _timestamp(value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest("field 'timestamp' must be an ISO 8601 string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise BadRequest("field 'timestamp' must be an ISO 8601 string") from exc
    if parsed.tzinfo is None:
        raise BadRequest("field 'timestamp' needs a UTC offset")
    return parsed.astimezone(UTC)


async def inbound_sms(request: web.Request) -> web.Response:
    """Take one inbound SMS through the pipeline."""
    deps = request.app[DEPS]
    data = await signed_json(request, deps.max_body_bytes)
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object")
    text = data.get("text")
    if not isinstance(text, str):
        raise BadRequest("field 'text' must be a string")
    message_id = string_field(data, "id", max_len=128)
    message = InboundMessage(
        channel=Channel.SMS,
        sender=string_field(data, "to", max_len=64),
        contact=string_field(data, "from", max_len=64),
        text=text,
        method=Method.SMS_KEYWORD,
        dedupe_key=f"http:{message_id}",
        received_at=datetime.now(UTC),
        carrier_time=_timestamp(data.get("timestamp")),
        evidence={"message_id": message_id, "source": "http", "remote": client_address(request)},
    )
    outcome = await deps.pipeline.handle(message)
    intent = outcome.intent
    return web.json_response(
        {
            "status": outcome.status.value,
            "inbound_id": outcome.inbound_id,
            "intent": intent.kind.value if intent else None,
            "match": intent.match.value if intent else None,
            "needs_review": intent.needs_review if intent else None,
            "ledger_seqs": list(outcome.ledger_seqs),
            "outbox_ids": list(outcome.outbox_ids),
        }
    )


def register(app: web.Application) -> None:
    """Add the route."""
    app.router.add_post("/v1/inbound/sms", inbound_sms)
