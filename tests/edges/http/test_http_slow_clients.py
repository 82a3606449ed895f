"""Slow clients over real sockets: 200 connections trickling their headers are cut after
``[http] header_timeout_seconds`` while a normal client is served, and a trickled body after
``body_timeout_seconds``."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from gateway.app import Gateway
from gateway.edges.http.protocol import LINGER_SECONDS
from gateway.settings import Settings

TIMEOUT = 1.0  # seconds: short, so the test is quick; the default is 10
TRICKLERS = 200
SILENT = 20


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[Gateway]:
    """A gateway whose request heads and bodies must be complete within ``TIMEOUT``."""
    http = dataclasses.replace(
        settings.http, header_timeout_seconds=TIMEOUT, body_timeout_seconds=TIMEOUT
    )
    async with Gateway(dataclasses.replace(settings, http=http)) as gw:
        yield gw


async def _read_until_closed(reader: asyncio.StreamReader, within: float) -> bytes:
    """Everything the server sent until it closed the connection (or the deadline passed)."""
    received = b""
    async with asyncio.timeout(within):
        while chunk := await reader.read(4096):
            received += chunk
    return received


async def test_trickling_heads_are_cut_and_a_normal_client_is_served(gateway: Gateway) -> None:
    """Each trickler gets 408 and a closed connection, each silent connection is closed, an
    idle keep-alive connection stays usable, and a normal request is answered meanwhile."""
    port = gateway.http_port
    async with aiohttp.ClientSession() as session:
        # A keep-alive connection that finished a request before the flood: it is idle, not
        # slow, and must not be cut by the head timeout.
        async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
            assert 200 == resp.status
        started = time.monotonic()
        tricklers = [await asyncio.open_connection("127.0.0.1", port) for _ in range(TRICKLERS)]
        silent = [await asyncio.open_connection("127.0.0.1", port) for _ in range(SILENT)]
        for _, writer in tricklers:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")

        async def trickle() -> None:
            """A header byte per connection every 0.2 s: the pace is the attack, not a wait."""
            while True:
                for _, writer in tricklers:
                    if not writer.is_closing():
                        writer.write(b"X")
                await asyncio.sleep(0.2)

        trickling = asyncio.create_task(trickle())
        try:
            async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
                assert 200 == resp.status  # served while 220 connections hang
            answers = await asyncio.gather(
                *(_read_until_closed(reader, TIMEOUT + 10) for reader, _ in tricklers)
            )
            quiet = await asyncio.gather(
                *(_read_until_closed(reader, TIMEOUT + 10) for reader, _ in silent)
            )
        finally:
            trickling.cancel()
            for _, writer in tricklers + silent:  # closed even when an assertion failed:
                writer.close()  # a leaked socket's warning would fail a later test instead
        elapsed = time.monotonic() - started
        assert TRICKLERS == sum(a.startswith(b"HTTP/1.1 408 Request Timeout\r\n") for a in answers)
        assert [b""] * SILENT == quiet  # nothing was sent: closed without an answer
        assert TIMEOUT <= elapsed < TIMEOUT + 10
        # The pooled keep-alive connection (idle longer than the head timeout by now) and a
        # new one both still work.
        async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
            assert 200 == resp.status


async def test_a_head_after_an_answer_is_timed_from_its_first_byte(gateway: Gateway) -> None:
    """On a keep-alive connection the next head may start late, but once started it must be
    complete within the timeout: a client cannot answer one request fast, then trickle."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.http_port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    first = await reader.readuntil(b'{"status": "ok"}')
    assert first.startswith(b"HTTP/1.1 200 OK\r\n")
    # Idle past the timeout: still open (nothing arrives, the read times out).
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(TIMEOUT * 1.5):
            await reader.read(1)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    started = time.monotonic()
    answer = await _read_until_closed(reader, TIMEOUT + 10)
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert TIMEOUT <= time.monotonic() - started < TIMEOUT + 10
    writer.close()


async def test_after_a_head_408_the_connection_closes_in_stages(gateway: Gateway) -> None:
    """RFC 9112 section 9.6: after the 408 the server closes its write side and goes on
    reading for a while. A close with the trickler's next bytes unread made the kernel answer
    them with a reset, which could reach the client before it read the 408 (seen in a full
    run: ConnectionResetError instead of the answer). Bytes sent after the 408 and the FIN
    are dropped quietly; only after the linger is the connection gone."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.http_port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    answer = await _read_until_closed(reader, TIMEOUT + 10)  # the 408, then end of stream
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    lingering_since = time.monotonic()
    for _ in range(5):  # a careless client still trickling: no reset while the server reads
        writer.write(b"X")
        await writer.drain()
        await asyncio.sleep(0.05)
    assert not writer.transport.is_closing()
    assert time.monotonic() - lingering_since < LINGER_SECONDS
    writer.close()


async def test_a_trickled_body_gets_408(gateway: Gateway) -> None:
    """Headers in time, then the body a byte at a time: the handler waited for it forever;
    now 408 in the one error shape once ``body_timeout_seconds`` have passed (aiohttp then
    discards what still comes for its lingering time, 10 s at most, and closes)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.http_port)
    writer.write(
        b"POST /v1/inbound/sms HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 500\r\n\r\n{"
    )
    started = time.monotonic()

    async def trickle() -> None:
        """A body byte every 0.2 s: the pace is the attack, not a wait."""
        while not writer.is_closing():
            writer.write(b" ")
            await asyncio.sleep(0.2)

    trickling = asyncio.create_task(trickle())
    try:
        async with asyncio.timeout(TIMEOUT + 10):
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            body = await reader.readexactly(length)
    finally:
        trickling.cancel()
        writer.close()
    assert head.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert b"Connection: close\r\n" in head
    assert "request_timeout" == json.loads(body)["error"]["code"]
    assert TIMEOUT <= time.monotonic() - started < TIMEOUT + 10
