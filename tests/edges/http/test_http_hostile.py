"""Hostile bytes at the HTTP edge, sent raw: every refusal is a 4xx in the one error shape,
echoes nothing that was sent, names no versions, and writes nothing."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import json
import time
from collections.abc import Callable
from urllib.parse import urlencode

import asyncpg
import pytest
from raw_http import RawResponse, exchange, request_bytes
from support import SECRET, count_rows

from gateway.app import Gateway
from gateway.edges.http.webhooks import twilio_signature
from gateway.email.links import Target
from gateway.security.signing import WEBHOOK_PURPOSE, derive_key, sign
from gateway.settings import Settings

TWILIO_TOKEN = "twilio-test-auth-token-0123456789"
KEY = derive_key(SECRET.encode(), WEBHOOK_PURPOSE)
MO = json.dumps({"id": "SM1", "from": "+14155550123", "to": "12345", "text": "STOP"}).encode()
FORM = urlencode({"MessageSid": "SM1", "From": "+14155550123", "To": "12345", "Body": "STOP"})
MARK = b"Zq7MarkerInput"  # sent inside the bad input: it must never come back


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The test settings with a Twilio auth token, so the Twilio route checks signatures."""
    return dataclasses.replace(
        settings, env={**settings.env, "GATEWAY_TWILIO_AUTH_TOKEN": TWILIO_TOKEN}
    )


async def _send(gateway: Gateway, request: bytes) -> RawResponse:
    assert gateway.http_port is not None
    response = await asyncio.to_thread(exchange, gateway.http_port, request)
    assert response is not None, "the server closed the connection without an answer"
    return response


def _assert_refusal(response: RawResponse, status: int, code: str) -> None:
    """The one error shape, our Server field, nothing sent echoed."""
    assert (status, "application/json") == (response.status, response.headers.get_content_type())
    assert code == json.loads(response.body)["error"]["code"]
    assert "consent-gateway" == response.header("Server")
    assert MARK not in response.body
    assert b"\\udc" not in response.body
    assert b"\xff" not in response.body


def _stamp() -> bytes:
    return str(int(time.time())).encode()


Build = Callable[[str], bytes]  # the admin key -> the raw request
REFUSED: list[tuple[str, Build, int, str]] = [
    (
        "bearer key that is not UTF-8",
        lambda key: request_bytes("GET", b"/v1/admin/audit", [(b"Authorization", b"Bearer \xff")]),
        401,
        "unauthorized",
    ),
    (
        "bearer key of non-ASCII letters",
        lambda key: request_bytes(
            "GET", b"/v1/admin/audit", [(b"Authorization", "Bearer ключ".encode())]
        ),
        401,
        "unauthorized",
    ),
    (
        "X-Twilio-Signature that is not UTF-8",
        lambda key: request_bytes(
            "POST",
            b"/v1/providers/twilio/sms",
            [
                (b"Content-Type", b"application/x-www-form-urlencoded"),
                (b"X-Twilio-Signature", b"\xff\xfe" + MARK),
            ],
            FORM.encode(),
        ),
        401,
        "bad_signature",
    ),
    (
        "X-Gateway-Signature with t=² (isdigit, but not int)",
        lambda key: request_bytes(
            "POST",
            b"/v1/inbound/sms",
            [(b"X-Gateway-Signature", "t=²,v1=".encode() + b"0" * 64)],
            MO,
        ),
        401,
        "bad_signature",
    ),
    (
        "X-Gateway-Signature with a 5,000-digit timestamp",
        lambda key: request_bytes(
            "POST",
            b"/v1/inbound/sms",
            [(b"X-Gateway-Signature", b"t=" + b"9" * 5000 + b",v1=0")],
            MO,
        ),
        401,
        "bad_signature",
    ),
    (
        "X-Gateway-Signature that is not UTF-8",
        lambda key: request_bytes(
            "POST",
            b"/v1/inbound/sms",
            [(b"X-Gateway-Signature", b"t=" + _stamp() + b",v1=\xff" + MARK)],
            MO,
        ),
        401,
        "bad_signature",
    ),
    (
        "?limit=² (superscript two)",
        lambda key: request_bytes(
            "GET", b"/v1/admin/audit?limit=%C2%B2", [(b"Authorization", f"Bearer {key}".encode())]
        ),
        400,
        "bad_request",
    ),
    (
        "?limit=١٠ (Arabic-Indic digits int() would read as 10)",
        lambda key: request_bytes(
            "GET",
            b"/v1/admin/audit?limit=%D9%A1%D9%A0",
            [(b"Authorization", f"Bearer {key}".encode())],
        ),
        400,
        "bad_request",
    ),
    (
        "?limit= 5,000 digits",
        lambda key: request_bytes(
            "GET",
            b"/v1/admin/audit?limit=" + b"9" * 5000,
            [(b"Authorization", f"Bearer {key}".encode())],
        ),
        400,
        "bad_request",
    ),
    (
        "?limit given twice",
        lambda key: request_bytes(
            "GET",
            b"/v1/admin/audit?limit=5&limit=6",
            [(b"Authorization", f"Bearer {key}".encode())],
        ),
        400,
        "bad_request",
    ),
    (
        "/readyz?scope= something else than intake",
        lambda key: request_bytes("GET", b"/readyz?scope=" + MARK, []),
        400,
        "bad_request",
    ),
    (
        "a gzip body that does not decompress",
        lambda key: request_bytes(
            "POST",
            b"/v1/gate/check",
            [(b"Authorization", f"Bearer {key}".encode()), (b"Content-Encoding", b"gzip")],
            b"not gzip " + MARK,
        ),
        400,
        "bad_request",
    ),
]


@pytest.mark.parametrize(("build", "status", "code"), [c[1:] for c in REFUSED],
                         ids=[c[0] for c in REFUSED])  # fmt: skip
async def test_hostile_header_query_and_body_bytes_get_a_4xx_and_write_nothing(
    gateway: Gateway, db: asyncpg.Connection, build: Build, status: int, code: str
) -> None:
    """Each of these answered 500 (or, for ``limit=١٠``, 200 with ten records) before."""
    _, key = await gateway.api.store.create_key("test", ["admin"], actor="test")
    _assert_refusal(await _send(gateway, build(key)), status, code)
    for table in ("inbound_events", "ledger", "outbox"):
        assert 0 == await count_rows(db, table), table


async def test_valid_signatures_still_pass(gateway: Gateway) -> None:
    """The same routes with well-formed signatures and query take the request (control)."""
    signed = request_bytes(
        "POST", b"/v1/inbound/sms", [(b"X-Gateway-Signature", sign(KEY, MO).encode())], MO
    )
    assert 200 == (await _send(gateway, signed)).status
    url = "http://127.0.0.1:8080/v1/providers/twilio/sms"  # the default providers.twilio URL
    pairs = sorted({"MessageSid": "SM2", "From": "+14155550123", "To": "12345",
                    "Body": "HELP"}.items())  # fmt: skip
    twilio = request_bytes(
        "POST",
        b"/v1/providers/twilio/sms",
        [
            (b"Content-Type", b"application/x-www-form-urlencoded"),
            (b"X-Twilio-Signature", twilio_signature(TWILIO_TOKEN, url, pairs).encode()),
        ],
        urlencode(pairs).encode(),
    )
    assert 200 == (await _send(gateway, twilio)).status
    _, key = await gateway.api.store.create_key("test", ["admin"], actor="test")
    audit = request_bytes(
        "GET", b"/v1/admin/audit?limit=7", [(b"Authorization", f"Bearer {key}".encode())]
    )
    assert 200 == (await _send(gateway, audit)).status


def _token(gateway: Gateway) -> bytes:
    """A real one-click token: what an echo or a log line must never show."""
    return gateway.email.links.token(
        Target("news@lists.acme-health.example", "a@b.example", None)
    ).encode()


MALFORMED: list[tuple[str, Callable[[bytes], bytes]]] = [
    ("a control byte in the path", lambda t: b"GET /u/" + t + b"\x01 HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("a byte that is not UTF-8 in the path", lambda t: b"GET /u/" + t + b"\xff HTTP/1.1\r\n\r\n"),
    ("a header name with a space", lambda t: b"GET /u/" + t + b" HTTP/1.1\r\nBad Name: 1\r\n\r\n"),
    ("a header line past 8 KiB", lambda t: b"GET /u/x HTTP/1.1\r\nX-A: " + t * 200 + b"\r\n\r\n"),
    ("an unknown HTTP version", lambda t: b"GET /u/" + t + b" HTTP/9.9\r\n\r\n"),
    (
        "a bad Content-Length",
        lambda t: b"POST /u/" + t + b" HTTP/1.1\r\nContent-Length: " + t + b"\r\n\r\n",
    ),
    (
        "a chunk size that is not hex",
        lambda t: (
            b"POST /v1/inbound/sms HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            + t
            + b"\r\nx\r\n0\r\n\r\n"
        ),
    ),
    ("not HTTP at all", lambda t: t + b" \x16\x03\x01\x00\xa5\x01\x00\r\n\r\n"),
]


@pytest.mark.parametrize("build", [c[1] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
async def test_requests_aiohttp_cannot_parse_get_the_one_shape_without_echo(
    gateway: Gateway, build: Callable[[bytes], bytes]
) -> None:
    """aiohttp's own 400 page quoted the offending bytes (here a one-click token) and named
    its version in ``Server``; now a fixed text in the one error shape."""
    token = _token(gateway)
    response = await _send(gateway, build(token))
    _assert_refusal(response, 400, "bad_request")
    assert token not in response.body
    assert token[:16] not in response.body


async def test_not_found_and_wrong_method_are_in_the_one_shape(gateway: Gateway) -> None:
    """The router's 404 and 405 were text/plain from aiohttp; 405 keeps ``Allow``."""
    missing = await _send(gateway, request_bytes("GET", b"/nowhere/" + MARK, []))
    _assert_refusal(missing, 404, "not_found")
    wrong = await _send(gateway, request_bytes("DELETE", b"/healthz", []))
    _assert_refusal(wrong, 405, "method_not_allowed")
    assert "GET,HEAD" == wrong.header("Allow")


@pytest.mark.parametrize("value", [b"\xff\xfe", MARK, b"100-continue, " + MARK])
async def test_an_expectation_other_than_100_continue_is_ignored(
    gateway: Gateway, value: bytes
) -> None:
    """aiohttp answered these before any middleware: a 417 quoting the value, and a 500 when
    it was not UTF-8. RFC 9110 section 10.1.1 lets a server ignore an unknown expectation."""
    response = await _send(gateway, request_bytes("GET", b"/healthz", [(b"Expect", value)]))
    assert (200, {"status": "ok"}) == (response.status, json.loads(response.body))
    assert "consent-gateway" == response.header("Server")


async def test_a_gzip_body_that_decompresses_is_still_read(gateway: Gateway) -> None:
    """Content-Encoding is honoured when it is right (control for the broken-gzip refusal)."""
    body = gzip.compress(MO)
    headers = [(b"X-Gateway-Signature", sign(KEY, MO).encode()), (b"Content-Encoding", b"gzip")]
    response = await _send(gateway, request_bytes("POST", b"/v1/inbound/sms", headers, body))
    assert (200, "committed") == (response.status, json.loads(response.body)["status"])
