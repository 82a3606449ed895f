"""Look-alike STOPs through the real HTTP edge: the signed inbound SMS webhook and the ledger."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import asyncpg
import pytest
from support import SECRET

from gateway.app import Gateway
from gateway.security.signing import HEADER, WEBHOOK_PURPOSE, derive_key, sign

KEY = derive_key(SECRET.encode(), WEBHOOK_PURPOSE)


async def _inbound(gateway: Gateway, text: str) -> tuple[int, Any]:
    body = json.dumps({"id": "SM1", "from": "+14155550123", "to": "12345", "text": text}).encode()
    headers = {"Content-Type": "application/json", HEADER: sign(KEY, body)}
    url = f"http://127.0.0.1:{gateway.http_port}/v1/inbound/sms"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as r,
    ):
        return r.status, await r.json()


@pytest.mark.parametrize(
    ("text", "match", "keyword", "review"),
    [
        ("ЅТОР", "exact", "stop", "yes"),  # Cyrillic Ѕ Т О Р
        ("SТОP", "exact", "stop", "yes"),  # Latin S and P around Cyrillic Т and О
        ("S\u200bTOP", "exact", "stop", "no"),  # a zero-width space inside the word
        ("СТОП", "phrase", "стоп", "yes"),  # Russian
    ],
)
async def test_lookalike_stop_is_an_opt_out_in_the_ledger(
    gateway: Gateway, db: asyncpg.Connection, text: str, match: str, keyword: str, review: str
) -> None:
    """A look-alike STOP opts out of every program: ledger rows with the text as evidence."""
    status, body = await _inbound(gateway, text)

    assert (200, "committed", "opt_out_all", match) == (
        status,
        body["status"],
        body["intent"],
        body["match"],
    )
    rows = await db.fetch(
        "SELECT program, action, new_state, evidence->>'keyword' AS keyword,"
        " evidence->>'text' AS text, evidence->>'needs_review' AS review"
        " FROM ledger ORDER BY program"
    )
    assert [
        ("flu", "opt_out", "opted_out", keyword, text, review),
        ("reminders", "opt_out", "opted_out", keyword, text, review),
    ] == [tuple(r) for r in rows]
    replies = await db.fetch("SELECT kind, language FROM outbox")
    # Short code 12345 has no Russian templates: the Russian STOP is answered in English.
    assert [("opt_out", "en")] == [tuple(r) for r in replies]


async def test_lookalike_start_is_not_an_opt_in(gateway: Gateway, db: asyncpg.Connection) -> None:
    """ЅТАRТ with Cyrillic letters is recorded as unknown: no consent row, no ledger row."""
    status, body = await _inbound(gateway, "ЅТАRТ")

    assert (200, "committed", "unknown") == (status, body["status"], body["intent"])
    assert 0 == await db.fetchval("SELECT count(*) FROM ledger")
    assert 0 == await db.fetchval("SELECT count(*) FROM consent")
