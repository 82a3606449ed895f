"""HTTP edge (I/O layer): health, readiness, metrics, the signed inbound-SMS webhook, the gate.

Adapters only: JSON in -> ``InboundMessage`` -> ``Pipeline.handle`` -> HTTP status out.
Status mapping (DESIGN.md invariants 1 and 7): committed or duplicate -> 200; bad JSON ->
400; bad signature -> 401; oversized body -> 413; a refused message (unknown sender, text
too long, invalid number) -> 422; nothing committed -> 503 with ``Retry-After``.
Errors are ``{"error": {"code": ..., "message": ...}}``; messages never echo a number,
address or body back.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.edges.signing import HEADER, SignatureError, verify
from gateway.errors import BadInput, GatewayError
from gateway.gate import GateAnswer, SendGate
from gateway.messages import InboundMessage, Method
from gateway.metrics import Metrics
from gateway.pipeline import Pipeline
from gateway.store.guard import CacheGuard
from keywords.model import Channel

log = logging.getLogger(__name__)

_MAX_BATCH_BODY = 16 * 1024 * 1024
_MAX_BATCH_RECIPIENTS = 100_000


@dataclass(frozen=True, slots=True)
class HttpDeps:
    """What the HTTP edge needs from the composition root."""

    pipeline: Pipeline
    gate: SendGate
    guard: CacheGuard
    pool: asyncpg.Pool
    metrics: Metrics
    webhook_key: bytes
    max_body_bytes: int
    signature_tolerance: int


DEPS = web.AppKey("deps", HttpDeps)


def _error(status: int, code: str, message: str, **headers: str) -> web.Response:
    return web.json_response(
        {"error": {"code": code, "message": message}}, status=status, headers=headers or None
    )


def _gateway_error(exc: GatewayError) -> web.Response:
    if exc.temporary:
        return _error(503, exc.code, exc.message, **{"Retry-After": "1"})
    return _error(422, exc.code, exc.message)


async def _signed_json(request: web.Request, limit: int) -> Any:
    """Read, size-check, authenticate and parse a signed JSON body."""
    deps = request.app[DEPS]
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    body = await request.content.read(limit + 1)
    if len(body) > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(body))
    verify(
        deps.webhook_key,
        request.headers.get(HEADER),
        body,
        tolerance=deps.signature_tolerance,
        now=time.time(),
    )
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadJson(f"body is not JSON: {exc.msg if hasattr(exc, 'msg') else exc}") from exc


class BadJson(Exception):
    """The body is not the JSON object the endpoint takes."""


def _field(data: Mapping[str, Any], name: str, *, max_len: int = 1_000) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise BadJson(f"field {name!r} must be a non-empty string")
    if len(value) > max_len:
        raise BadJson(f"field {name!r} is too long")
    return value


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map refusals to the wire in one place."""
    try:
        return await handler(request)
    except SignatureError as exc:
        return _error(401, "bad_signature", str(exc))
    except BadJson as exc:
        return _error(400, "bad_request", str(exc))
    except GatewayError as exc:
        return _gateway_error(exc)
    except web.HTTPRequestEntityTooLarge:
        return _error(413, "body_too_large", "request body too large")


async def healthz(_request: web.Request) -> web.Response:
    """Liveness: the event loop answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: Postgres answers; the cache state is reported, not required."""
    deps = request.app[DEPS]
    try:
        async with deps.pool.acquire(timeout=2) as conn:
            await conn.fetchval("SELECT 1", timeout=2)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return web.json_response({"status": "unavailable", "database": "down"}, status=503)
    cache = "ok" if deps.guard.usable else "bypassed"
    return web.json_response({"status": "ready", "database": "ok", "cache": cache})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition."""
    body = generate_latest(request.app[DEPS].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def inbound_sms(request: web.Request) -> web.Response:
    """A signed JSON inbound SMS ``{id, from, to, text}``; 200 only after the commit."""
    deps = request.app[DEPS]
    data = await _signed_json(request, deps.max_body_bytes)
    if not isinstance(data, dict):
        raise BadJson("body must be a JSON object")
    text = data.get("text")
    if not isinstance(text, str):
        raise BadJson("field 'text' must be a string")
    message = InboundMessage(
        channel=Channel.SMS,
        sender=_field(data, "to", max_len=64),
        contact=_field(data, "from", max_len=64),
        text=text,
        method=Method.SMS_KEYWORD,
        dedupe_key="http:" + _field(data, "id", max_len=128),
        received_at=datetime.now(UTC),
        carrier_time=_timestamp(data.get("timestamp")),
        evidence={
            "message_id": data["id"],
            "source": "http",
            "remote": request.remote or "",
        },
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


def _timestamp(value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadJson("field 'timestamp' must be an ISO 8601 string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise BadJson("field 'timestamp' must be an ISO 8601 string") from exc
    if parsed.tzinfo is None:
        raise BadJson("field 'timestamp' needs a UTC offset")
    return parsed.astimezone(UTC)


def _answer_json(answer: GateAnswer) -> dict[str, Any]:
    return {
        "allowed": answer.allowed,
        "reason": answer.reason.value,
        "since": answer.since.isoformat() if answer.since else None,
    }


def _scope(data: Any) -> tuple[str, str, Channel]:
    if not isinstance(data, dict):
        raise BadJson("body must be a JSON object")
    channel_name = _field(data, "channel", max_len=16)
    try:
        channel = Channel(channel_name)
    except ValueError as exc:
        raise BadJson("field 'channel' must be 'sms' or 'email'") from exc
    return _field(data, "sender", max_len=254), _field(data, "program", max_len=64), channel


async def gate_check(request: web.Request) -> web.Response:
    """``{sender, program, channel, to}`` -> ``{allowed, reason, since}``."""
    deps = request.app[DEPS]
    data = await _signed_json(request, deps.max_body_bytes)
    sender, program, channel = _scope(data)
    answer = await deps.gate.check(sender, program, channel, _field(data, "to", max_len=254))
    return web.json_response(_answer_json(answer))


async def gate_batch(request: web.Request) -> web.Response:
    """``{sender, program, channel, to: [...]}`` -> ``{results: [...]}`` in input order."""
    deps = request.app[DEPS]
    data = await _signed_json(request, _MAX_BATCH_BODY)
    sender, program, channel = _scope(data)
    recipients = data.get("to")
    if not isinstance(recipients, list) or not all(isinstance(r, str) for r in recipients):
        raise BadJson("field 'to' must be a list of strings")
    if len(recipients) > _MAX_BATCH_RECIPIENTS:
        raise BadInput(f"at most {_MAX_BATCH_RECIPIENTS} recipients per request")
    answers = await deps.gate.check_many(sender, program, channel, recipients)
    return web.json_response({"results": [_answer_json(a) for a in answers]})


def build_app(deps: HttpDeps) -> web.Application:
    """The aiohttp application; the composition root runs it."""
    app = web.Application(middlewares=[_errors], client_max_size=_MAX_BATCH_BODY)
    app[DEPS] = deps
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/v1/inbound/sms", inbound_sms)
    app.router.add_post("/v1/gate/check", gate_check)
    app.router.add_post("/v1/gate/batch", gate_batch)
    return app
