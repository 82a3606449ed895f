"""Send-gate API (I/O layer): ``POST /v1/gate/check`` and ``POST /v1/gate/batch``, signed JSON."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.edges.http.server import (
    DEPS,
    MAX_SIGNED_BODY,
    BadRequest,
    signed_json,
    string_field,
)
from gateway.errors import BadInput
from gateway.gate import GateAnswer
from keywords.model import Channel

MAX_BATCH_RECIPIENTS = 100_000


def answer_json(answer: GateAnswer) -> dict[str, Any]:
    """One answer on the wire."""
    return {
        "allowed": answer.allowed,
        "reason": answer.reason.value,
        "since": answer.since.isoformat() if answer.since else None,
    }


def _scope(data: Any) -> tuple[str, str, Channel]:
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object")
    try:
        channel = Channel(string_field(data, "channel", max_len=16))
    except ValueError as exc:
        raise BadRequest("field 'channel' must be 'sms' or 'email'") from exc
    return (
        string_field(data, "sender", max_len=254),
        string_field(data, "program", max_len=64),
        channel,
    )


async def gate_check(request: web.Request) -> web.Response:
    """``{sender, program, channel, to}`` -> ``{allowed, reason, since}``."""
    deps = request.app[DEPS]
    data = await signed_json(request, deps.max_body_bytes)
    sender, program, channel = _scope(data)
    to = string_field(data, "to", max_len=254)
    return web.json_response(answer_json(await deps.gate.check(sender, program, channel, to)))


async def gate_batch(request: web.Request) -> web.Response:
    """``{sender, program, channel, to: [...]}`` -> ``{results: [...]}`` in input order."""
    deps = request.app[DEPS]
    data = await signed_json(request, MAX_SIGNED_BODY)
    sender, program, channel = _scope(data)
    recipients = data.get("to")
    if not isinstance(recipients, list) or not all(isinstance(r, str) for r in recipients):
        raise BadRequest("field 'to' must be a list of strings")
    if len(recipients) > MAX_BATCH_RECIPIENTS:
        raise BadInput(f"at most {MAX_BATCH_RECIPIENTS} recipients per request")
    answers = await deps.gate.check_many(sender, program, channel, recipients)
    return web.json_response({"results": [answer_json(a) for a in answers]})


def register(app: web.Application) -> None:
    """Add the routes."""
    app.router.add_post("/v1/gate/check", gate_check)
    app.router.add_post("/v1/gate/batch", gate_batch)
