"""HTTP server plumbing (I/O layer): shared dependencies, the error middleware, the app factory.

Each HTTP module exposes ``register(app)``; ``build_app`` calls them in order. Refusals are
mapped to the wire here and nowhere else (DESIGN.md invariants 1 and 7): bad JSON -> 400;
bad signature -> 401; oversized body -> 413; a refused message or request (unknown sender,
text too long, invalid number) -> 422; nothing committed -> 503 with ``Retry-After``.
Error bodies are ``{"error": {"code": ..., "message": ...}}`` and never echo a number,
address or message body back.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiohttp import web

from gateway.edges.signing import HEADER, SignatureError, verify
from gateway.errors import GatewayError
from gateway.gate import SendGate
from gateway.health import Readiness
from gateway.metrics import Metrics
from gateway.pipeline import Pipeline
from gateway.storable import storable
from keywords.model import Channel

MAX_SIGNED_BODY = 16 * 1024 * 1024  # the largest body any route accepts (batch gate)


@dataclass(frozen=True, slots=True)
class HttpDeps:
    """What the HTTP modules need from the composition root."""

    pipeline: Pipeline
    gate: SendGate
    readiness: Readiness
    pool: asyncpg.Pool
    metrics: Metrics
    webhook_key: bytes  # signs nothing here; verifies, with the previous secrets' keys
    webhook_previous_keys: tuple[bytes, ...]
    max_body_bytes: int
    signature_tolerance: int


DEPS = web.AppKey("deps", HttpDeps)


class BadRequest(Exception):
    """The body is not what the endpoint takes (HTTP 400)."""


def error_response(status: int, code: str, message: str, **headers: str) -> web.Response:
    """The one error body shape."""
    return web.json_response(
        {"error": {"code": code, "message": message}}, status=status, headers=headers or None
    )


async def read_body(request: web.Request, limit: int) -> bytes:
    """The raw body, refused with 413 past ``limit`` bytes without reading it all."""
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    # StreamReader.read(n) returns what has arrived, up to n: loop until EOF or past the limit.
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = await request.content.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    body = b"".join(chunks)
    if len(body) > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(body))
    return body


async def signed_json(request: web.Request, limit: int) -> Any:
    """Read, size-check, authenticate (``X-Gateway-Signature``) and parse a JSON body."""
    deps = request.app[DEPS]
    body = await read_body(request, limit)
    verify(
        (deps.webhook_key, *deps.webhook_previous_keys),
        request.headers.get(HEADER),
        body,
        tolerance=deps.signature_tolerance,
        now=time.time(),
    )
    try:
        return json.loads(body)
    except UnicodeDecodeError as exc:
        raise BadRequest("body is not UTF-8") from exc
    except json.JSONDecodeError as exc:
        raise BadRequest(f"body is not JSON: {exc.msg}") from exc


def string_field(data: Mapping[str, Any], name: str, *, max_len: int = 1_000) -> str:
    """A required, non-empty, bounded string field."""
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"field {name!r} must be a non-empty string")
    if len(value) > max_len:
        raise BadRequest(f"field {name!r} is too long")
    if not storable(value):
        # A NUL or a lone surrogate cannot be stored: refused for good (400), never the
        # temporary 503 a failed commit would give (gateway/storable.py).
        raise BadRequest(f"field {name!r} holds characters that cannot be stored")
    return value


def channel_field(data: Mapping[str, Any]) -> Channel:
    """The required ``channel`` field: ``sms`` or ``email``."""
    try:
        return Channel(string_field(data, "channel", max_len=16))
    except ValueError as exc:
        raise BadRequest("field 'channel' must be 'sms' or 'email'") from exc


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map refusals to HTTP statuses in one place."""
    try:
        return await handler(request)
    except SignatureError as exc:
        return error_response(401, "bad_signature", str(exc))
    except BadRequest as exc:
        return error_response(400, "bad_request", str(exc))
    except GatewayError as exc:
        if exc.temporary:
            return error_response(503, exc.code, exc.message, **{"Retry-After": "1"})
        return error_response(422, exc.code, exc.message)
    except web.HTTPRequestEntityTooLarge:
        return error_response(413, "body_too_large", "request body too large")


Register = Callable[[web.Application], None]


def build_app(deps: HttpDeps, modules: Iterable[Register]) -> web.Application:
    """The aiohttp application with every module's routes."""
    app = web.Application(middlewares=[errors_middleware], client_max_size=MAX_SIGNED_BODY)
    app[DEPS] = deps
    for register in modules:
        register(app)
    return app
