"""HTTP for the audit tests: keys, one HTTP call (raw bytes too), a web-form opt-in body.

The API tests keep the same beside them (tests/edges/api/); these tests live in their own
folder, so they carry the few functions they need.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from gateway.app import Gateway


async def new_key(gateway: Gateway, *scopes: str) -> str:
    """A fresh API key with ``scopes``."""
    _, key = await gateway.api.store.create_key("audit-test", list(scopes), actor="test")
    return key


async def fetch(
    gateway: Gateway, method: str, path: str, *, key: str | None = None, json: Any = None
) -> tuple[int, str, bytes]:
    """One request: status, content type and the raw body."""
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    url = f"http://127.0.0.1:{gateway.http_port}{path}"
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, json=json, headers=headers) as resp,
    ):
        return resp.status, resp.content_type, await resp.read()


async def call(
    gateway: Gateway, method: str, path: str, *, key: str | None = None, json: Any = None
) -> tuple[int, Any]:
    """One request; the body parsed as JSON when it is JSON, else the text."""
    import json as json_module

    status, content_type, body = await fetch(gateway, method, path, key=key, json=json)
    if content_type == "application/json":
        return status, json_module.loads(body)
    return status, body.decode()


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
