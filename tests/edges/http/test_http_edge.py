"""The HTTP edge over real HTTP: the signed inbound webhook, the gate API, health and metrics."""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp
import asyncpg
import pytest
from support import SECRET, count_rows

from gateway.app import Gateway
from gateway.security.signing import HEADER, WEBHOOK_PURPOSE, derive_key, sign

KEY = derive_key(SECRET.encode(), WEBHOOK_PURPOSE)


def _url(gateway: Gateway, path: str) -> str:
    return f"http://127.0.0.1:{gateway.http_port}{path}"


async def _post(
    gateway: Gateway, path: str, body: bytes, *, signature: str | None = None
) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", HEADER: signature or sign(KEY, body)}
    async with (
        aiohttp.ClientSession() as session,
        session.post(_url(gateway, path), data=body, headers=headers) as resp,
    ):
        return resp.status, await resp.json()


def _mo(**fields: object) -> bytes:
    message = {"id": "SM1", "from": "+14155550123", "to": "12345", "text": "STOP", **fields}
    return json.dumps(message).encode()


async def test_signed_stop_is_recorded_and_answered_after_commit(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """The README's example: a signed STOP gets 200 with the ledger and outbox ids."""
    status, body = await _post(gateway, "/v1/inbound/sms", _mo())

    assert 200 == status
    assert ("committed", "opt_out_all", "exact") == (body["status"], body["intent"], body["match"])
    assert 2 == len(body["ledger_seqs"])
    assert 1 == len(body["outbox_ids"])
    assert 2 == await count_rows(db, "ledger")


async def test_repeated_webhook_is_a_duplicate(gateway: Gateway, db: asyncpg.Connection) -> None:
    """A provider retrying the same id gets 200 'duplicate' and nothing new is written."""
    await _post(gateway, "/v1/inbound/sms", _mo())
    status, body = await _post(gateway, "/v1/inbound/sms", _mo())
    assert (200, "duplicate") == (status, body["status"])
    assert 1 == await count_rows(db, "outbox")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "bad_request"),
        (b"[1, 2]", 400, "bad_request"),
        (_mo(id=""), 400, "bad_request"),
        (_mo(text=7), 400, "bad_request"),
        (_mo(to="99999"), 422, "unknown_sender"),
        (_mo(**{"from": "12"}), 422, "invalid_address"),
        (_mo(timestamp="yesterday"), 400, "bad_request"),
        (_mo(text="STOP " + "x" * 70_000), 413, "body_too_large"),
    ],
)
async def test_bad_input_gets_a_clear_4xx_and_writes_nothing(
    gateway: Gateway, db: asyncpg.Connection, body: bytes, status: int, code: str
) -> None:
    """Bad JSON, unknown sender, long text, invalid number, huge body: 4xx, no rows."""
    got_status, got = await _post(gateway, "/v1/inbound/sms", body)
    assert (status, code) == (got_status, got["error"]["code"])
    assert "4155550123" not in json.dumps(got)
    for table in ("contacts", "inbound_events", "ledger", "outbox"):
        assert 0 == await count_rows(db, table), table


async def test_a_text_over_the_limit_is_read_up_to_it_and_never_an_opt_in(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """A 2,000-character text that begins with STOP is an opt-out (it used to be refused for
    good, the STOP lost); the evidence keeps its length; a long START is no opt-in."""
    status, body = await _post(gateway, "/v1/inbound/sms", _mo(text="STOP " + "x" * 2000))
    assert (200, "opt_out_all") == (status, body["intent"])
    evidence = json.loads(await db.fetchval("SELECT evidence::text FROM inbound_events"))
    assert "2005" == evidence["truncated_from"]
    assert 1600 == len(await db.fetchval("SELECT body FROM inbound_events"))

    status, body = await _post(gateway, "/v1/inbound/sms", _mo(id="SM2", text="START" * 400))
    assert (200, "unknown") == (status, body["intent"])


@pytest.mark.parametrize(
    "signature",
    [
        "",
        "t=abc,v1=00",
        f"t={int(time.time())},v1={'0' * 64}",
        sign(KEY, _mo(), timestamp=int(time.time()) - 3600),
        sign(b"another key", _mo()),
        sign(KEY, _mo(text="START")),
    ],
)
async def test_forged_or_stale_signatures_are_refused(
    gateway: Gateway, db: asyncpg.Connection, signature: str
) -> None:
    """Missing, malformed, wrong-key, replayed-late or other-body signatures get 401."""
    headers = {"Content-Type": "application/json"}
    if signature:
        headers[HEADER] = signature
    async with (
        aiohttp.ClientSession() as session,
        session.post(_url(gateway, "/v1/inbound/sms"), data=_mo(), headers=headers) as resp,
    ):
        assert 401 == resp.status
        assert "bad_signature" == (await resp.json())["error"]["code"]
    assert 0 == await count_rows(db, "inbound_events")


async def _gate(gateway: Gateway, path: str, body: bytes, key: str) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(_url(gateway, path), data=body, headers=headers) as resp,
    ):
        return resp.status, await resp.json()


async def test_gate_api_single_and_batch(gateway: Gateway) -> None:
    """The gate answers per recipient, in order, with reasons (API key with scope read)."""
    _, key = await gateway.api.store.create_key("test", ["read"], actor="test")
    await _post(gateway, "/v1/inbound/sms", _mo(text="START"))
    scope = {"sender": "12345", "program": "reminders", "channel": "sms"}
    status, one = await _gate(
        gateway, "/v1/gate/check", json.dumps({**scope, "to": "+14155550123"}).encode(), key
    )
    assert (200, True, "opted_in") == (status, one["allowed"], one["reason"])

    recipients = ["+14155550123", "+14155550999", "garbage"]
    status, many = await _gate(
        gateway, "/v1/gate/batch", json.dumps({**scope, "to": recipients}).encode(), key
    )
    assert 200 == status
    assert [(True, "opted_in"), (False, "no_consent"), (False, "invalid_address")] == [
        (r["allowed"], r["reason"]) for r in many["results"]
    ]

    status, err = await _gate(
        gateway, "/v1/gate/check", json.dumps({**scope, "program": "nope", "to": "1"}).encode(), key
    )
    assert (422, "unknown_program") == (status, err["error"]["code"])


@pytest.mark.parametrize(
    "to",
    [[1], ["+14155550123", None], [["+14155550123"]], [{"n": "+1"}], [True], "+14155550123"],
)
async def test_a_batch_whose_to_is_not_a_list_of_strings_is_refused(
    gateway: Gateway, to: object
) -> None:
    """Numbers as JSON numbers, nulls, nested lists or objects: 400 naming the field."""
    _, key = await gateway.api.store.create_key("test", ["read"], actor="test")
    scope = {"sender": "12345", "program": "reminders", "channel": "sms"}
    status, err = await _gate(
        gateway, "/v1/gate/batch", json.dumps({**scope, "to": to}).encode(), key
    )
    assert (400, "field 'to' must be a list of strings") == (status, err["error"]["message"])


async def test_health_readiness_and_metrics(gateway: Gateway) -> None:
    """Liveness, readiness with the cache state, and Prometheus counters after a message."""
    await _post(gateway, "/v1/inbound/sms", _mo())
    async with aiohttp.ClientSession() as session:
        async with session.get(_url(gateway, "/healthz")) as resp:
            assert (200, {"status": "ok"}) == (resp.status, await resp.json())
        async with session.get(_url(gateway, "/readyz")) as resp:
            ready = await resp.json()
            assert (200, "ready", "ok") == (resp.status, ready["status"], ready["database"])
        async with session.get(_url(gateway, "/metrics")) as resp:
            text = await resp.text()
    assert 'gateway_inbound_total{outcome="committed"} 1.0' in text
    assert 'gateway_ledger_events_total{action="opt_out"} 2.0' in text
