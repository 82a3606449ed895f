"""The HTTP edge's wire mapping, in process: what each pipeline answer becomes on the wire.

The app is the gateway's own (``build_app``: the error middleware, the fixed ``Server``
field, the signed inbound route) served by aiohttp's ``TestServer`` on 127.0.0.1 in front
of a ``StubPipeline``: no database and no writer, so every answer the pipeline can give is
one line of a table. The real-server tests beside this one (``test_http_edge.py``) take
the same route through a real commit.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from stubs import KEY, HttpClient, StubPipeline, duplicate, http_client, stub_http_app, unchanged

from gateway.edges.http import inbound
from gateway.edges.http.server import SERVER
from gateway.errors import (
    BadInput,
    InvalidAddress,
    Suppressed,
    TemporaryFailure,
    UnknownSender,
)
from gateway.messages import Method
from gateway.security.signing import HEADER, sign
from keywords.model import Channel

ROUTE = "/v1/inbound/sms"


@pytest.fixture
def pipeline() -> StubPipeline:
    """A pipeline whose answer each test sets."""
    return StubPipeline()


@pytest.fixture
async def client(pipeline: StubPipeline) -> AsyncIterator[HttpClient]:
    """A client of the app, served on 127.0.0.1."""
    async with http_client(stub_http_app(pipeline, [inbound.register])) as test_client:
        yield test_client


def _mo(**fields: object) -> bytes:
    return json.dumps({"id": "SM1", "from": "+14155550123", "to": "12345", "text": "STOP",
                       **fields}).encode()  # fmt: skip


async def _post(
    client: HttpClient,
    body: bytes,
    *,
    signature: str | None = None,
) -> tuple[int, dict[str, str], Any]:
    headers = {"Content-Type": "application/json", HEADER: signature or sign(KEY, body)}
    async with client.post(ROUTE, data=body, headers=headers) as resp:
        return resp.status, dict(resp.headers), await resp.json()


async def test_a_commit_is_200_with_what_was_recorded(
    client: HttpClient, pipeline: StubPipeline
) -> None:
    """200, JSON, the outcome's ids and intent; the message is the webhook's, keyed by id."""
    status, headers, body = await _post(client, _mo())
    assert (200, "application/json; charset=utf-8", SERVER) == (
        status,
        headers["Content-Type"],
        headers["Server"],
    )
    assert {
        "status": "committed",
        "inbound_id": 41,
        "intent": "opt_out_all",
        "match": "exact",
        "needs_review": False,
        "ledger_seqs": [7],
        "outbox_ids": [90],
    } == body
    [message] = pipeline.messages
    assert (Channel.SMS, "12345", "+14155550123", "STOP", Method.SMS_KEYWORD, "http:SM1") == (
        message.channel,
        message.sender,
        message.contact,
        message.text,
        message.method,
        message.dedupe_key,
    )
    assert ("SM1", "http", "127.0.0.1") == (
        message.evidence["message_id"],
        message.evidence["source"],
        message.evidence["remote"],
    )


@pytest.mark.parametrize(
    ("outcome", "answer"),
    [
        (duplicate(), ("duplicate", None, [], [])),
        (unchanged(), ("committed", "opt_out_all", [], [])),
    ],
    ids=["duplicate", "unchanged"],
)
async def test_a_duplicate_or_a_no_op_is_still_200(
    client: HttpClient,
    pipeline: StubPipeline,
    outcome: Any,
    answer: tuple[str, str | None, list[int], list[int]],
) -> None:
    """Every committed outcome is acknowledged; a redelivery names no intent (the first
    delivery decided)."""
    pipeline.answer = outcome
    status, _, body = await _post(client, _mo())
    assert 200 == status
    assert answer == (body["status"], body["intent"], body["ledger_seqs"], body["outbox_ids"])


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (UnknownSender("the destination is not a configured sender"), 422, "unknown_sender"),
        (InvalidAddress("not a phone number"), 422, "invalid_address"),
        (Suppressed("erased"), 422, "suppressed"),
        (BadInput("message id missing", code="bad_message_id"), 422, "bad_message_id"),
    ],
    ids=["unknown_sender", "invalid_address", "suppressed", "bad_input"],
)
async def test_a_refusal_for_good_is_422_in_the_error_shape(
    client: HttpClient,
    pipeline: StubPipeline,
    error: BadInput,
    status: int,
    code: str,
) -> None:
    """``BadInput`` and its kinds: 422, the error's code and message, no Retry-After."""
    pipeline.answer = error
    got, headers, body = await _post(client, _mo())
    assert (status, {"error": {"code": code, "message": error.message}}) == (got, body)
    assert "Retry-After" not in headers


async def test_nothing_committed_is_503_with_retry_after(
    client: HttpClient, pipeline: StubPipeline
) -> None:
    """``TemporaryFailure``: 503 and ``Retry-After: 1``, so the sender tries again
    (docs/DESIGN.md, invariant 1)."""
    pipeline.answer = TemporaryFailure("could not commit")
    status, headers, body = await _post(client, _mo())
    assert (503, "1") == (status, headers["Retry-After"])
    assert {"error": {"code": "temporarily_unavailable", "message": "could not commit"}} == body


async def test_a_bug_behind_the_route_is_500_and_echoes_nothing(
    client: HttpClient,
    pipeline: StubPipeline,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An unexpected exception: 500 in the one shape with a fixed text; the log has the
    traceback and the route's template, not the exception's message."""
    pipeline.answer = KeyError("+14155550123")
    status, headers, body = await _post(client, _mo())
    assert (500, {"error": {"code": "internal_error", "message": "internal error"}}) == (
        status,
        body,
    )
    assert "Retry-After" not in headers
    [record] = [r for r in caplog.records if r.getMessage() == "HTTP handler failed"]
    assert (ROUTE, True) == (getattr(record, "route", None), record.exc_info is not None)


@pytest.mark.parametrize(
    ("body", "signature", "status", "code"),
    [
        (_mo(), sign(b"another key", _mo()), 401, "bad_signature"),
        (b"{not json", None, 400, "bad_request"),
        (b"[]", None, 400, "bad_request"),
        (_mo(text=5), None, 400, "bad_request"),
        (_mo(id=""), None, 400, "bad_request"),
        (_mo(timestamp="yesterday"), None, 400, "bad_request"),
    ],
    ids=["forged", "not_json", "not_an_object", "text_not_a_string", "empty_id", "bad_time"],
)
async def test_what_the_route_refuses_never_reaches_the_pipeline(
    client: HttpClient,
    pipeline: StubPipeline,
    body: bytes,
    signature: str | None,
    status: int,
    code: str,
) -> None:
    """A forged signature is 401, a body the route cannot read 400: the pipeline is never
    asked, so nothing can be written (docs/DESIGN.md, invariant 7)."""
    got, _, answer = await _post(client, body, signature=signature)
    assert (status, code) == (got, answer["error"]["code"])
    assert [] == pipeline.messages


async def test_aiohttp_refusals_are_in_the_same_shape(
    client: HttpClient, pipeline: StubPipeline
) -> None:
    """404 and 405 from the router, and 413 past the body limit, in the one error shape
    (405 keeps its Allow field), and with our Server field."""
    async with client.get("/nowhere") as resp:
        assert (404, "not_found", SERVER) == (
            resp.status,
            (await resp.json())["error"]["code"],
            resp.headers["Server"],
        )
    async with client.get(ROUTE) as resp:
        assert (405, "method_not_allowed", "POST") == (
            resp.status,
            (await resp.json())["error"]["code"],
            resp.headers["Allow"],
        )
    big = _mo(text="x" * (64 * 1024))
    status, _, body = await _post(client, big)
    assert (413, "body_too_large") == (status, body["error"]["code"])
    assert [] == pipeline.messages
