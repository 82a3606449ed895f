"""Send-gate API (I/O layer): ``POST /v1/gate/check`` and ``POST /v1/gate/batch`` (scope ``read``).

The batch takes up to a million recipients of one sender and program in one JSON body and
streams ``{"results": [...]}`` back in input order, a chunk at a time, so the first answers
leave while later ones are still being looked up and memory stays bounded per chunk.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from aiohttp import web

from gateway.edges.http.audit_deps import start_decision
from gateway.edges.http.auth import require
from gateway.edges.http.server import (
    DEPS,
    MAX_SIGNED_BODY,
    BadRequest,
    channel_field,
    read_body,
    string_field,
)
from gateway.errors import BadInput
from gateway.gate import GateAnswer
from gateway.send_rules import SendTerms
from keywords.model import Channel

MAX_BATCH_RECIPIENTS = 1_000_000
_CHUNK = 5_000  # recipients per step of the stream: one step blocks the loop ~10 ms at most


def answer_json(answer: GateAnswer) -> dict[str, Any]:
    """One answer on the wire: ``not_before`` and ``detail`` only when a send rule spoke."""
    out: dict[str, Any] = {
        "allowed": answer.allowed,
        "verdict": answer.verdict,
        "reason": answer.reason.value,
        "since": answer.since.isoformat() if answer.since else None,
    }
    if answer.not_before is not None:
        out["not_before"] = answer.not_before.isoformat()
    if answer.detail is not None:
        out["detail"] = answer.detail
    return out


def _encoded(answer: GateAnswer) -> bytes:
    return orjson.dumps(answer_json(answer))


def encode_answers(answers: list[GateAnswer]) -> bytes:
    """``a,b,c`` (no brackets): the JSON objects of ``answers``, joined.

    The batch gate's hot path. Many recipients share an answer (every refusal without a
    ``since``, and opt-ins committed in one group-commit batch share their ``since``), so
    each distinct (reason, since) is encoded once; the rest are dict lookups. Measured on
    100,000 answers: 10x faster than ``orjson.dumps`` of the dataclasses when values
    repeat, 2x when none do (bench/run_api.py).
    """
    memo: dict[tuple[str, object, object, object], bytes] = {}
    parts: list[bytes] = []
    append = parts.append
    for answer in answers:
        key = (answer.reason, answer.since, answer.not_before, answer.detail)
        encoded = memo.get(key)
        if encoded is None:
            encoded = memo[key] = _encoded(answer)
        append(encoded)
    return b",".join(parts)


def _all_strings(values: list[Any]) -> bool:
    """Whether every value is a string: a join refuses anything else (a JSON body's values
    are exactly ``str``, never a subclass). 0.7 ms for 100,000 numbers, against 3.9 ms for
    a generator testing each one's type (2026-12-03)."""
    try:
        "".join(values)
    except TypeError:
        return False
    return True


def parse_json(body: bytes) -> Any:
    """A JSON body, or 400."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not JSON: {exc}") from exc


def terms_of(deps: Any, data: dict[str, Any], scope: tuple[str, str, Channel]) -> SendTerms | None:
    """The send rules' question of a request: its ``category`` (default: the program's
    first) and ``at`` (an ISO 8601 instant with offset; default now)."""
    category = data.get("category")
    if category is not None and (not isinstance(category, str) or len(category) > 64):
        raise BadRequest("field 'category' must be a string of at most 64 characters")
    at = data.get("at")
    when = None
    if at is not None:
        if not isinstance(at, str) or len(at) > 40:
            raise BadRequest("field 'at' must be an ISO 8601 instant")
        try:
            when = datetime.fromisoformat(at)
        except ValueError:
            raise BadRequest("field 'at' must be an ISO 8601 instant") from None
        if when.tzinfo is None:
            raise BadRequest("field 'at' needs an offset, such as Z or -05:00")
    sender, program, channel = scope
    terms: SendTerms | None = deps.gate.terms(sender, program, channel, category, when)
    return terms


def scope_of(data: Any) -> tuple[str, str, Channel]:
    """``sender``, ``program``, ``channel`` of a gate or send request."""
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object")
    channel = channel_field(data)
    return (
        string_field(data, "sender", max_len=254),
        string_field(data, "program", max_len=64),
        channel,
    )


async def gate_check(request: web.Request) -> web.Response:
    """``{sender, program, channel, to}`` -> ``{allowed, reason, since}``."""
    await require(request, "read")
    deps = request.app[DEPS]
    data = parse_json(await read_body(request, deps.max_body_bytes))
    sender, program, channel = scope = scope_of(data)
    to = string_field(data, "to", max_len=254)
    terms = terms_of(deps, data, scope)
    answer = await deps.gate.check(sender, program, channel, to, terms)
    return web.Response(body=_encoded(answer), content_type="application/json")


async def gate_batch(request: web.Request) -> web.StreamResponse:
    """``{sender, program, channel, to: [...]}`` -> ``{decision_id, results: [...]}`` in input
    order; a send reported with (decision_id, index) is joined to its answer (POST /v1/sends)."""
    principal = await require(request, "read")
    deps = request.app[DEPS]
    data = parse_json(await read_body(request, MAX_SIGNED_BODY))
    sender, program, channel = scope_of(data)
    terms = terms_of(deps, data, (sender, program, channel))
    recipients = data.get("to")
    if not isinstance(recipients, list) or not _all_strings(recipients):
        raise BadRequest("field 'to' must be a list of strings")
    if len(recipients) > MAX_BATCH_RECIPIENTS:
        raise BadInput(f"at most {MAX_BATCH_RECIPIENTS} recipients per request", code="too_many")
    # The first chunk is answered before the headers go out, so a refused scope (unknown
    # sender or program) or an unavailable store still gets a proper 4xx / 503.
    first = await deps.gate.check_many(sender, program, channel, recipients[:_CHUNK], terms)
    scope = (sender, program, channel.value)
    decision = await start_decision(request, scope, len(recipients), first, principal.id)
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    head = b"{" if decision is None else b'{"decision_id":"' + decision.id.encode() + b'",'
    await response.write(head + b'"results":[' + encode_answers(first))
    for start in range(_CHUNK, len(recipients), _CHUNK):
        chunk = await deps.gate.check_many(
            sender, program, channel, recipients[start : start + _CHUNK], terms
        )
        if chunk:
            if decision is not None:
                decision.add(chunk)
            await response.write(b"," + encode_answers(chunk))
    if decision is not None and len(recipients) > _CHUNK:
        await decision.finish()
    await response.write(b"]}")
    await response.write_eof()
    return response


def register(app: web.Application) -> None:
    """Add the routes."""
    app.router.add_post("/v1/gate/check", gate_check)
    app.router.add_post("/v1/gate/batch", gate_batch)
