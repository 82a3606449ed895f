"""HTTP server plumbing (I/O layer): shared dependencies, the error middleware, the app factory.

Each HTTP module exposes ``register(app)``; ``build_app`` calls them in order. Refusals are
mapped to the wire here and nowhere else (README "How the invariants are kept"): bad JSON or
a bad query parameter -> 400; bad signature -> 401; oversized body -> 413; a refused message
or request (unknown sender, text too long, invalid number) -> 422; nothing committed -> 503
with ``Retry-After``. Error bodies are ``{"error": {"code": ..., "message": ...}}`` with a
fixed text: they never echo a number, address, token, header, query or message body back.
aiohttp's own refusals (404, 405, 413, ...) get the same shape, and every response carries
``Server: consent-gateway``, no versions. A handler that fails unexpectedly is a 500 in
that shape, logged with its frames but not its message (which can quote the input).
Malformed requests that never reach a route are answered in gateway/edges/http/protocol.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiohttp import hdrs, web

from gateway.errors import GatewayError
from gateway.gate import SendGate
from gateway.health import Readiness
from gateway.logs import HIDE_EXC_MESSAGE
from gateway.metrics import Metrics
from gateway.pipeline import Pipeline
from gateway.security.signing import HEADER, SignatureError, verify
from gateway.storable import storable
from keywords.model import Channel

MAX_SIGNED_BODY = 16 * 1024 * 1024  # the largest body any route accepts (batch gate)
# RFC 9110 section 10.2.4: a Server field "SHOULD NOT" carry "unnecessarily fine-grained
# detail"; aiohttp's default names the Python and aiohttp versions.
SERVER = "consent-gateway"
# aiohttp's own refusals, in the one error shape: the status's code and a fixed text.
_HTTP_ERRORS = {
    400: ("bad_request", "the request is not valid"),
    404: ("not_found", "no such resource"),
    405: ("method_not_allowed", "method not allowed for this resource"),
    408: ("request_timeout", "the request did not arrive in time"),
    413: ("body_too_large", "request body too large"),
    414: ("uri_too_long", "request URI too long"),
    415: ("unsupported_media_type", "unsupported media type"),
    417: ("expectation_failed", "the expectation cannot be met"),
    431: ("headers_too_large", "request header fields too large"),
}
_KEPT_HEADERS = (hdrs.ALLOW,)  # 405 must name the allowed methods (RFC 9110 section 15.5.6)

log = logging.getLogger(__name__)


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
    body_timeout: float = 60.0  # seconds for a whole request body (read_body)


DEPS = web.AppKey("deps", HttpDeps)


class BadRequest(Exception):
    """The body is not what the endpoint takes (HTTP 400)."""


class BodyTimeout(Exception):
    """The body did not arrive within ``HttpDeps.body_timeout`` (HTTP 408, then close)."""


def error_response(status: int, code: str, message: str, **headers: str) -> web.Response:
    """The one error body shape."""
    return web.json_response(
        {"error": {"code": code, "message": message}}, status=status, headers=headers or None
    )


def http_error(status: int, **headers: str) -> web.Response:
    """The one error shape for a status aiohttp (or the protocol) refuses with."""
    code, message = _HTTP_ERRORS.get(status, ("http_error", "the request was refused"))
    return error_response(status, code, message, **headers)


def internal_error(status: int = 500) -> web.Response:
    """A failure of ours, in the one shape; says nothing of what failed."""
    return error_response(status, "internal_error", "internal error")


def query_int(request: web.Request, name: str, *, default: int, low: int, high: int) -> int:
    """A whole-number query parameter in ``low..high``; ``BadRequest`` for anything else.

    ASCII digits only, their count bounded before ``int()``: ``str.isdigit()`` is true for
    "²" and "١" (which ``int()`` refuses or reads), and ``int()`` of 5,000 digits raises.
    """
    values = request.query.getall(name, [])
    if not values:
        return default
    digits = len(str(high))
    if len(values) > 1 or not re.fullmatch(f"[0-9]{{1,{digits}}}", values[0]):
        raise BadRequest(f"query parameter {name!r} must be a whole number {low}..{high}")
    value = int(values[0])
    if not low <= value <= high:
        raise BadRequest(f"query parameter {name!r} must be a whole number {low}..{high}")
    return value


def query_choice(request: web.Request, name: str, choices: tuple[str, ...]) -> str | None:
    """A query parameter that is absent (None) or exactly one of ``choices``."""
    values = request.query.getall(name, [])
    if not values:
        return None
    if len(values) > 1 or values[0] not in choices:
        raise BadRequest(f"query parameter {name!r} must be one of {', '.join(choices)}")
    return values[0]


async def read_body(request: web.Request, limit: int) -> bytes:
    """The raw body, refused with 413 past ``limit`` bytes without reading it all, with 400
    when it cannot be read (a broken chunked framing, a Content-Encoding that does not
    decode: aiohttp raises ``RequestPayloadError`` for both), and with 408 when it is not
    all there within ``body_timeout``: a client trickling a body held its connection and
    handler for as long as it liked (the head timeout ends once the headers are in)."""
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    # StreamReader.read(n) returns what has arrived, up to n: loop until EOF or past the limit.
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(request.app[DEPS].body_timeout):
            while size <= limit:
                try:
                    chunk = await request.content.read(limit + 1 - size)
                except web.RequestPayloadError as exc:
                    raise BadRequest("the request body could not be read") from exc
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
    except TimeoutError as exc:
        raise BodyTimeout from exc
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
    except BodyTimeout:
        # RFC 9110 section 15.5.9: 408, and close (the rest of the body may still come).
        timed_out = http_error(408, **{hdrs.CONNECTION: "close"})
        timed_out.force_close()
        return timed_out
    except GatewayError as exc:
        if exc.temporary:
            return error_response(503, exc.code, exc.message, **{"Retry-After": "1"})
        return error_response(422, exc.code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:  # a redirect (303 after a preference change) is an answer
            raise
        # aiohttp's texts can quote the request ("Unknown Expect: ..."): ours are fixed.
        kept = {name: exc.headers[name] for name in _KEPT_HEADERS if name in exc.headers}
        return http_error(exc.status, **kept)
    except ConnectionResetError:
        # The peer left mid-request (aiohttp fails the body read so): nobody reads an answer.
        return http_error(400)
    except Exception:
        if request.writer.output_size > 0:
            raise  # a streamed answer already started: aiohttp cuts the connection
        log.error(
            "HTTP handler failed",
            exc_info=True,
            extra={"route": _route_of(request), HIDE_EXC_MESSAGE: True},
        )
        return internal_error()


def _route_of(request: web.Request) -> str:
    """The route's template (``/u/{token}``), never the path, which can carry a token."""
    info = request.match_info.route.resource
    return "?" if info is None else info.canonical


async def _fixed_server(_request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: the ``Server`` field without versions, on every response a
    route or aiohttp's router made (protocol-level refusals set it themselves)."""
    response.headers[hdrs.SERVER] = SERVER


Register = Callable[[web.Application], None]


def build_app(deps: HttpDeps, modules: Iterable[Register]) -> web.Application:
    """The aiohttp application with every module's routes."""
    app = web.Application(middlewares=[errors_middleware], client_max_size=MAX_SIGNED_BODY)
    app.on_response_prepare.append(_fixed_server)
    app[DEPS] = deps
    for register in modules:
        register(app)
    return app
