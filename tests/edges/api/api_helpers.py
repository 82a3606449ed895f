"""Helpers for the HTTP API tests: keys, one HTTP call, settings with providers configured."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from gateway.app import Gateway
from gateway.settings import Settings

TWILIO_TOKEN = "twilio-test-auth-token-0123456789"
TWILIO_SID = "AC00000000000000000000000000000001"
MESSAGES_PATH = "/2010-04-01/Accounts/{sid}/Messages.json"


@contextlib.asynccontextmanager
async def twilio_messages(
    handler: Callable[[web.Request], Awaitable[web.Response]],
) -> AsyncIterator[str]:
    """A Twilio-compatible Messages.json answered by ``handler`` on an ephemeral port of
    127.0.0.1; yields its base URL."""
    app = web.Application()
    app.router.add_post(MESSAGES_PATH, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


async def new_key(gateway: Gateway, *scopes: str) -> str:
    """A fresh API key with ``scopes``."""
    _, key = await gateway.api.store.create_key("test", list(scopes), actor="test")
    return key


async def call(
    gateway: Gateway,
    method: str,
    path: str,
    *,
    key: str | None = None,
    json: Any = None,
    data: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """One request; the body parsed as JSON when it is JSON, else the text."""
    sent = dict(headers or {})
    if key is not None:
        sent["Authorization"] = f"Bearer {key}"
    url = f"http://127.0.0.1:{gateway.http_port}{path}"
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method, url, json=json, data=data, headers=sent, allow_redirects=False
        ) as resp,
    ):
        if resp.content_type == "application/json":
            return resp.status, await resp.json()
        return resp.status, await resp.text()


def with_edges(settings: Settings, env: dict[str, str] | None = None, **edges: Any) -> Settings:
    """``settings`` with extra edge tables (``providers``, ``api``) and environment."""
    return dataclasses.replace(
        settings,
        edges={**settings.edges, **edges},
        env={**settings.env, **(env or {})},
    )


def opt_in_body(contact: str, key: str, **extra: Any) -> dict[str, Any]:
    """A web-form opt-in to ``12345/reminders`` with the evidence a form must carry."""
    return {
        "channel": "sms",
        "sender": "12345",
        "program": "reminders",
        "contact": contact,
        "action": "opt_in",
        "method": "web_form",
        "idempotency_key": key,
        "evidence": {
            "checkbox_text": "Text me appointment reminders",
            "disclosure_version": "2026-01",
            "ip": "203.0.113.9",
            "user_agent": "test",
            "page_url": "https://acme.example/signup",
        },
        **extra,
    }
