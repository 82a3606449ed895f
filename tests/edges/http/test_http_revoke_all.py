"""Revoke-all through the signed SMS webhook, on real PostgreSQL and Redis (docs/rules.md).

With ``[rules] revoke_all = "on"``: STOP FLU stops reminders too, one confirmation offers
reminders back, "1" re-joins reminders only, the ledger says so, and the gate refuses every
program in between. With "auto" the outcome follows the FCC date (47 CFR 64.1200(a)(10),
2027-01-31): today (2026-12-03) STOP FLU stops flu only.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
import pytest
from support import SECRET, make_settings

from gateway.app import Gateway
from gateway.security.signing import HEADER, WEBHOOK_PURPOSE, derive_key, sign
from gateway.settings import Settings
from rules.revocation import revoke_all_in_force

KEY = derive_key(SECRET.encode(), WEBHOOK_PURPOSE)
PHONE = "+14155550123"


@pytest.fixture
def settings(schema: str, redis_prefix: str, request: pytest.FixtureRequest) -> Settings:
    """The example settings with ``[rules] revoke_all`` "on", or as the test parametrizes."""
    base = make_settings(schema, redis_prefix)
    value = getattr(request, "param", "on")
    return dataclasses.replace(base, rules=dataclasses.replace(base.rules, revoke_all=value))


def _url(gateway: Gateway, path: str) -> str:
    return f"http://127.0.0.1:{gateway.http_port}{path}"


async def _text(gateway: Gateway, mo_id: str, text: str) -> dict[str, Any]:
    body = json.dumps({"id": mo_id, "from": PHONE, "to": "12345", "text": text}).encode()
    headers = {"Content-Type": "application/json", HEADER: sign(KEY, body)}
    async with (
        aiohttp.ClientSession() as session,
        session.post(_url(gateway, "/v1/inbound/sms"), data=body, headers=headers) as resp,
    ):
        assert 200 == resp.status
        answer: dict[str, Any] = await resp.json()
        return answer


async def _allowed(gateway: Gateway, key: str) -> dict[str, bool]:
    """The gate's answer for each program of 12345, by POST /v1/gate/check."""
    found: dict[str, bool] = {}
    async with aiohttp.ClientSession() as session:
        for program in ("reminders", "flu"):
            body = {"sender": "12345", "program": program, "channel": "sms", "to": PHONE}
            async with session.post(
                _url(gateway, "/v1/gate/check"),
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
            ) as resp:
                assert 200 == resp.status
                found[program] = (await resp.json())["allowed"]
    return found


async def _join_both(gateway: Gateway) -> None:
    """START joins reminders; FLU asks "Reply YES" (double opt-in) and YES confirms it."""
    await _text(gateway, "SM-start", "START")
    await _text(gateway, "SM-flu", "FLU")
    await _text(gateway, "SM-yes", "YES")


async def test_stop_flu_under_revoke_all_stops_both_and_one_answer_keeps_reminders(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """The whole conversation: STOP FLU, one confirmation with the offer, "1" keeps reminders."""
    _, key = await gateway.api.store.create_key("test", ["read"], actor="test")
    await _join_both(gateway)
    assert {"reminders": True, "flu": True} == await _allowed(gateway, key)

    stop = await _text(gateway, "SM-stop-flu", "STOP FLU")
    assert ("committed", "opt_out") == (stop["status"], stop["intent"])
    assert 2 == len(stop["ledger_seqs"])
    assert {"reminders": False, "flu": False} == await _allowed(gateway, key)

    rows = await db.fetch(
        "SELECT program, action, method, new_state, evidence FROM ledger"
        " WHERE seq = ANY($1::bigint[]) ORDER BY program",
        stop["ledger_seqs"],
    )
    assert [("flu", "opt_out", "sms_keyword", "opted_out"),
            ("reminders", "opt_out", "sms_keyword", "opted_out")] == [
        (r["program"], r["action"], r["method"], r["new_state"]) for r in rows
    ]  # fmt: skip
    for row in rows:
        evidence = json.loads(row["evidence"])
        assert ("widened", "flu", "reminders", "STOP FLU", "opt_out") == (
            evidence["revoke_all"],
            evidence["revoke_all_named"],
            evidence["keep_offer"],
            evidence["text"],
            evidence["intent"],
        )
    (confirmation,) = await db.fetch(
        "SELECT kind, body FROM outbox WHERE id = ANY($1::bigint[])", stop["outbox_ids"]
    )
    assert "opt_out" == confirmation["kind"]  # the opt-out confirmation path (five minutes)
    assert confirmation["body"].endswith("Reply 1 to keep Acme Health Reminders.")

    keep = await _text(gateway, "SM-keep", "1")
    assert ("committed", "keep") == (keep["status"], keep["intent"])
    (row,) = await db.fetch(
        "SELECT program, action, method, old_state, new_state, inbound_id, evidence FROM ledger"
        " WHERE seq = ANY($1::bigint[])",
        keep["ledger_seqs"],
    )
    assert ("reminders", "opt_in", "sms_keyword", "opted_out", "opted_in") == (
        row["program"], row["action"], row["method"], row["old_state"], row["new_state"],
    )  # fmt: skip
    evidence = json.loads(row["evidence"])
    assert ("answered", str(stop["inbound_id"]), "keep", "1") == (
        evidence["keep_offer"],
        evidence["keep_offer_inbound_id"],
        evidence["intent"],
        evidence["text"],
    )
    assert {"reminders": True, "flu": False} == await _allowed(gateway, key)
    kinds = await db.fetch(
        "SELECT kind, program FROM outbox WHERE id = ANY($1::bigint[])", keep["outbox_ids"]
    )
    assert [("opt_in", "reminders")] == [(r["kind"], r["program"]) for r in kinds]

    # The answer closed the offer: a second "1" is what any digit is, nothing.
    again = await _text(gateway, "SM-keep-again", "1")
    assert ("unknown", [], []) == (again["intent"], again["ledger_seqs"], again["outbox_ids"])
    assert 0 == await db.fetchval("SELECT count(*) FROM keep_offers")


async def test_no_answer_keeps_everything_stopped(gateway: Gateway, db: asyncpg.Connection) -> None:
    """Until the person answers, every program stays stopped; another text closes nothing."""
    _, key = await gateway.api.store.create_key("test", ["read"], actor="test")
    await _join_both(gateway)
    await _text(gateway, "SM-stop-flu", "STOP FLU")
    other = await _text(gateway, "SM-other", "thanks")
    assert [] == other["ledger_seqs"]
    assert {"reminders": False, "flu": False} == await _allowed(gateway, key)
    assert 1 == await db.fetchval("SELECT count(*) FROM keep_offers")


@pytest.mark.parametrize("settings", ["auto"], indirect=True)
async def test_stop_flu_with_auto_follows_the_fcc_date(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """ "auto" before 2027-01-31: STOP FLU stops flu only, with flu's own confirmation."""
    _, key = await gateway.api.store.create_key("test", ["read"], actor="test")
    await _join_both(gateway)
    stop = await _text(gateway, "SM-stop-flu", "STOP FLU")
    if revoke_all_in_force(datetime.now(UTC), "auto"):  # the webhook stamps the time itself
        assert {"reminders": False, "flu": False} == await _allowed(gateway, key)
        return
    assert 1 == len(stop["ledger_seqs"])
    assert {"reminders": True, "flu": False} == await _allowed(gateway, key)
    evidence = json.loads(
        await db.fetchval("SELECT evidence FROM ledger WHERE seq = $1", stop["ledger_seqs"][0])
    )
    assert "revoke_all" not in evidence
    body = await db.fetchval("SELECT body FROM outbox WHERE id = $1", stop["outbox_ids"][0])
    assert body.startswith("Acme Flu Shot Alerts:")
    assert 0 == await db.fetchval("SELECT count(*) FROM keep_offers")
