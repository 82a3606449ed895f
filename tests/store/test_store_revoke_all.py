"""Revoke-all through the pipeline and the writer, on real PostgreSQL and Redis.

The switch is read at the message's received time (rules/revocation.py); every opt-out path
that names one program widens; the paths that record no revocation keep their scope; a keep
offer is closed by the next change and expires (keywords/keep.py, migration 003).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from support import make_settings, sms

from gateway.app import Gateway
from gateway.messages import InboundMessage, Method
from gateway.settings import Settings
from keywords.model import Channel, IntentKind

PHONE = "+14155550123"
NEW_YORK = ZoneInfo("America/New_York")
FCC_DATE = datetime(2027, 1, 31, tzinfo=NEW_YORK)


@pytest.fixture
def settings(schema: str, redis_prefix: str, request: pytest.FixtureRequest) -> Settings:
    """``[rules] revoke_all`` "on", or as the test parametrizes."""
    base = make_settings(schema, redis_prefix)
    value = getattr(request, "param", "on")
    return dataclasses.replace(base, rules=dataclasses.replace(base.rules, revoke_all=value))


async def _join_both(gateway: Gateway) -> None:
    for text in ("START", "FLU", "YES"):
        await gateway.pipeline.handle(sms(text, contact=PHONE))


async def _states(db: asyncpg.Connection) -> dict[str, str]:
    rows = await db.fetch("SELECT program, state FROM consent WHERE sender = '12345'")
    return {r["program"]: r["state"] for r in rows}


@pytest.mark.parametrize("settings", ["auto"], indirect=True)
@pytest.mark.parametrize(
    ("received", "widened"),
    [(FCC_DATE - timedelta(microseconds=1), False), (FCC_DATE, True)],
)
async def test_auto_reads_the_switch_at_the_received_time(
    gateway: Gateway, db: asyncpg.Connection, received: datetime, widened: bool
) -> None:
    """ "auto": 2027-01-30 23:59:59.999999 New York stops flu only; midnight stops both."""
    await _join_both(gateway)
    message = dataclasses.replace(sms("STOP FLU", contact=PHONE), received_at=received)
    await gateway.pipeline.handle(message)
    expected = "opted_out" if widened else "opted_in"
    assert {"reminders": expected, "flu": "opted_out"} == await _states(db)


@pytest.mark.parametrize(
    ("method", "extra"),
    [
        (Method.PREFERENCE_PAGE, {"source": "preference_page"}),
        (Method.WEB_FORM, {"checkbox_text": "stop flu alerts"}),
        (Method.VERBAL, {"reference": "call-17"}),
    ],
)
async def test_decided_opt_outs_of_one_program_are_widened(
    gateway: Gateway, db: asyncpg.Connection, method: Method, extra: dict[str, str]
) -> None:
    """Preference page and /v1/consent opt-outs of one program stop every program, each
    ledger row keeping its method and evidence and noting the widening."""
    await _join_both(gateway)
    outcome = await gateway.pipeline.handle(
        InboundMessage.decided(
            channel=Channel.SMS,
            sender="12345",
            contact=PHONE,
            method=method,
            dedupe_key=f"decided:{method.value}",
            kind=IntentKind.OPT_OUT,
            program="flu",
            evidence=extra,
        )
    )
    assert {"reminders": "opted_out", "flu": "opted_out"} == await _states(db)
    rows = await db.fetch(
        "SELECT method, evidence FROM ledger WHERE seq = ANY($1::bigint[])", outcome.ledger_seqs
    )
    assert 2 == len(rows)
    for row in rows:
        evidence = json.loads(row["evidence"])
        assert method.value == row["method"]
        assert ("widened", "flu") == (evidence["revoke_all"], evidence["revoke_all_named"])
        assert extra.items() <= evidence.items()


async def test_an_expired_double_opt_in_is_no_revocation(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """The sweep's opt-out of an unconfirmed sign-up (revokes=False) keeps its one program."""
    await gateway.pipeline.handle(sms("START", contact=PHONE))
    await gateway.pipeline.handle(sms("FLU", contact=PHONE))
    await gateway.pipeline.handle(
        InboundMessage.decided(
            channel=Channel.SMS,
            sender="12345",
            contact=PHONE,
            method=Method.API,
            dedupe_key="expire:test",
            kind=IntentKind.OPT_OUT,
            program="flu",
            evidence={"reason": "double opt-in not confirmed in time"},
            suppress_replies=True,
            revokes=False,
        )
    )
    assert {"reminders": "opted_in", "flu": "opted_out"} == await _states(db)


async def test_start_closes_the_offer(gateway: Gateway, db: asyncpg.Connection) -> None:
    """A change after the offer (START) closes it: a later "1" is an unknown text."""
    await _join_both(gateway)
    await gateway.pipeline.handle(sms("STOP FLU", contact=PHONE))
    await gateway.pipeline.handle(sms("START", contact=PHONE))
    assert 0 == await db.fetchval("SELECT count(*) FROM keep_offers")
    outcome = await gateway.pipeline.handle(sms("1", contact=PHONE))
    assert outcome.intent is not None
    assert IntentKind.UNKNOWN == outcome.intent.kind
    assert () == outcome.ledger_seqs


async def test_an_expired_offer_is_no_offer(gateway: Gateway, db: asyncpg.Connection) -> None:
    """Past expires_at (24 hours, keywords/keep.py) a "1" changes nothing."""
    await _join_both(gateway)
    await gateway.pipeline.handle(sms("STOP FLU", contact=PHONE))
    row = await db.fetchrow("SELECT offered_at, expires_at, programs FROM keep_offers")
    assert row is not None
    assert timedelta(hours=24) == row["expires_at"] - row["offered_at"]
    assert ["reminders"] == row["programs"]
    await db.execute("UPDATE keep_offers SET expires_at = now() - interval '1 second'")
    outcome = await gateway.pipeline.handle(sms("1", contact=PHONE))
    assert () == outcome.ledger_seqs
    assert {"reminders": "opted_out", "flu": "opted_out"} == await _states(db)


async def test_offer_and_answer_in_one_batch(gateway: Gateway, db: asyncpg.Connection) -> None:
    """STOP FLU and "1" submitted at once (one batch or two) are decided in order: the
    answer sees the offer its own batch made."""
    await _join_both(gateway)
    stop, keep = sms("STOP FLU", contact=PHONE), sms("1", contact=PHONE)
    prepared = [gateway.pipeline.prepare(stop), gateway.pipeline.prepare(keep)]
    outcomes = await asyncio.gather(*(gateway.writer.submit(e) for e in prepared))
    assert [IntentKind.OPT_OUT, IntentKind.KEEP] == [
        o.intent.kind for o in outcomes if o.intent is not None
    ]
    assert {"reminders": "opted_in", "flu": "opted_out"} == await _states(db)
    assert 0 == await db.fetchval("SELECT count(*) FROM keep_offers")
