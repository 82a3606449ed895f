"""What the HTTP edge logs when outsiders misbehave, read from the JSON lines the gateway
writes: never a token, one short line per bad request, a bounded number in a flood, and a
repeated traceback once."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator

import pytest
from json_logs import JsonLines, captured
from raw_http import RawResponse, exchange, request_bytes

from gateway.app import Gateway
from gateway.edges.http.consent_api import CONFIRM_PURPOSE, PREFERENCES_PURPOSE, pack
from gateway.email.links import Target
from gateway.health import Report
from gateway.logs import LimitedLog

NEWS = "news@lists.acme-health.example"
MARK = "Zq7MarkerInLog"


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    """Every log line of every logger (aiohttp's included), at DEBUG, during the test."""
    with captured() as lines:
        yield lines


async def _send(gateway: Gateway, request: bytes) -> RawResponse | None:
    assert gateway.http_port is not None
    return await asyncio.to_thread(exchange, gateway.http_port, request)


def _tokens(gateway: Gateway) -> dict[str, str]:
    """A real token for each path that carries one."""
    codec = gateway.api.tokens
    return {
        "u": gateway.email.links.token(Target(NEWS, "ann@example.org", None)),
        "p": codec.issue(pack("email", "ann@example.org"), PREFERENCES_PURPOSE, ttl_seconds=600),
        "c": codec.issue(
            pack("email", NEWS, "news", "ann@example.org"), CONFIRM_PURPOSE, ttl_seconds=600
        ),
    }


def _leaks(lines: list[str], secret: str) -> list[str]:
    """Lines holding ``secret`` or a long piece of it."""
    pieces = {secret[i : i + 12] for i in range(0, max(1, len(secret) - 12), 6)}
    return [line for line in lines if any(piece in line for piece in pieces)]


async def test_tokens_in_rejected_and_accepted_requests_never_reach_a_log_line(
    gateway: Gateway, log_lines: list[str]
) -> None:
    """A rejected request line carrying an unsubscribe token was logged with a traceback
    quoting it; now each refusal is one short line naming the parser's error type."""
    tokens = _tokens(gateway)
    t = tokens["u"].encode()
    refused = [
        b"GET /u/" + t + b"\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /u/" + t + b"\xff HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /u/" + t + b" HTTP/1.1\r\nBad Name: " + t + b"\r\n\r\n",
        b"GET /u/x HTTP/1.1\r\nX-Long: " + t * 100 + b"\r\n\r\n",
        b"GET /u/" + t + b" HTTP/9.9\r\n\r\n",
        b"POST /u/" + t + b" HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + t + b"\r\n\r\n",
    ]
    for request in refused:
        response = await _send(gateway, request)
        assert response is not None
        assert 400 == response.status
    # Accepted ones too: the pages, a one-click POST, and one whose gzip body is broken.
    for kind, token in tokens.items():
        response = await _send(gateway, request_bytes("GET", f"/{kind}/{token}".encode(), []))
        assert response is not None
        assert 200 == response.status
    one_click = request_bytes(
        "POST", f"/u/{tokens['u']}".encode(), [], b"List-Unsubscribe=One-Click"
    )
    assert 200 == getattr(await _send(gateway, one_click), "status", None)
    broken = request_bytes(
        "POST", f"/u/{tokens['u']}".encode(), [(b"Content-Encoding", b"gzip")], b"not gzip"
    )
    assert 400 == getattr(await _send(gateway, broken), "status", None)

    assert log_lines
    for token in tokens.values():
        assert [] == _leaks(log_lines, token)
    assert [] == [line for line in log_lines if "Traceback" in line]
    refusals = [json.loads(line) for line in log_lines if "HTTP request" in line]
    expected = ["BadHttpMessage"] * 3 + ["BadStatusLine", "ContentEncodingError"]
    expected += ["InvalidURLError"] * 2
    assert expected == sorted(entry["reason"] for entry in refusals)
    assert all(len(json.dumps(entry)) < 300 for entry in refusals)


async def test_a_flood_of_bad_requests_writes_a_bounded_number_of_lines(
    gateway: Gateway, log_lines: list[str]
) -> None:
    """Forty malformed requests wrote forty multi-KB tracebacks; now ten short lines a minute
    per reason."""
    before = len(log_lines)
    for n in range(40):
        response = await _send(gateway, f"GET /x{n}\x01 HTTP/1.1\r\n\r\n".encode())
        assert response is not None
        assert 400 == response.status
    written = log_lines[before:]
    assert 10 == len(written)
    assert sum(len(line) for line in written) < 3_000


async def test_a_repeated_traceback_is_written_once_and_without_its_message(
    gateway: Gateway, log_lines: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handler that fails (a fault injected: no input makes one fail now) answers 500 in
    the one shape; its traceback is written once, without the exception's message (which
    can quote input), and each repeat is one short line."""

    async def broken(*, intake_only: bool) -> Report:
        raise ValueError(f"invalid literal: {MARK}")

    monkeypatch.setattr(gateway.readiness, "check", broken)
    for _ in range(20):
        response = await _send(gateway, request_bytes("GET", b"/readyz", []))
        assert response is not None
        assert (500, {"error": {"code": "internal_error", "message": "internal error"}}) == (
            response.status,
            json.loads(response.body),
        )
    failures = [json.loads(line) for line in log_lines if "HTTP handler failed" in line]
    assert 20 == len(failures)
    assert "/readyz" == failures[0]["route"]
    assert "ValueError (message not logged)" in failures[0]["exc"]
    assert "gateway/edges/http/ops.py" in failures[0]["exc"]
    assert [("ValueError", "repeated")] * 19 == [
        (f["exc_type"], f["traceback"]) for f in failures[1:]
    ]
    assert [] == [line for line in log_lines if MARK in line]


def test_the_first_line_after_a_quiet_window_counts_what_was_left_out() -> None:
    """``LimitedLog``: past its burst a key is silent for the window; the next line it writes
    carries ``left_out``, so a flood is visible without being written out."""
    now = [0.0]
    lines = JsonLines()
    logger = logging.getLogger("test.limited")
    logger.addHandler(lines)
    logger.setLevel(logging.INFO)
    limited = LimitedLog(logger, per_seconds=60.0, burst=2, clock=lambda: now[0])
    try:
        for _ in range(7):
            limited.log(logging.INFO, "refused", key="x", reason="x")
        now[0] = 61.0
        limited.log(logging.INFO, "refused", key="x", reason="x")
    finally:
        logger.removeHandler(lines)
    assert [None, None, 5] == [json.loads(line).get("left_out") for line in lines.lines]
