"""The send rules in the gate, through real HTTP: deferred, refused and allowed by place,
category and earlier sends (docs/rules.md).

Each test asks about a fixed instant (``at``) or runs the gateway on the test clock
(gateway/clock.py), so none depends on the hour it runs at. Numbers: +1305 (Miami, Florida:
08:00-20:00 for marketing), +1415 (San Francisco: the federal 08:00-21:00).
"""

from __future__ import annotations

import copy
import dataclasses
import tomllib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from api_helpers import (
    TWILIO_SID,
    TWILIO_TOKEN,
    call,
    new_key,
    opt_in_body,
    twilio_messages,
    with_edges,
)
from support import CONFIG, PG_URL, eventually, make_settings, sms

from gateway.app import Gateway
from gateway.edges.http.audit_deps import ANSWER_CODES as EDGE_CODES
from gateway.gate import GateReason
from gateway.settings import OutboxSettings, Settings
from gateway.store.send_reports import ANSWER_CODES
from keywords.catalog import SenderCatalog
from keywords.loading import load_catalogs, load_sender

FLORIDA = "+13055550100"
CALIFORNIA = "+14155550123"
# 2026-12-03 20:30 in Miami (EST, UTC-5): past Florida's 20:00, inside the federal 21:00.
EVENING = "2026-12-04T01:30:00+00:00"
NEXT_MORNING = datetime(2026, 12, 4, 13, 0, tzinfo=UTC)  # 08:00 EST
MARKETING = {"sender": "12345", "program": "offers", "channel": "sms"}
FAST_OUTBOX = OutboxSettings(poll_interval_seconds=0.05)


def catalogs() -> dict[str, SenderCatalog]:
    """The example senders, with a marketing program ``offers`` on 12345 whose sign-up
    records express written consent (marketing by SMS needs it)."""
    found = dict(load_catalogs(CONFIG.parent / "senders"))
    raw = tomllib.loads((CONFIG.parent / "senders" / "12345.toml").read_text(encoding="utf-8"))
    offers = copy.deepcopy(raw["programs"]["reminders"])
    offers.pop("translations", None)
    offers.update(
        title="Acme Offers",
        description="offers",
        default=False,
        keywords=["OFFERS"],
        categories=["marketing"],
        basis="express_written",
    )
    raw["programs"]["offers"] = offers
    found["12345"] = load_sender(raw, "senders/12345.toml")
    return found


def rules_settings(schema: str, prefix: str, env: dict[str, str] | None = None) -> Settings:
    settings = make_settings(schema, prefix, rules=True)
    return dataclasses.replace(settings, env={**settings.env, **(env or {})})


@pytest.fixture
async def ruled(schema: str, redis_prefix: str) -> AsyncIterator[Gateway]:
    """A gateway with the send rules on and the ``offers`` program."""
    async with Gateway(rules_settings(schema, redis_prefix), catalogs=catalogs()) as gw:
        yield gw


async def opt_in(gw: Gateway, key: str, contact: str, program: str, tag: str) -> None:
    body = opt_in_body(contact, f"{tag}-{contact}", program=program)
    status, answer = await call(gw, "POST", "/v1/consent", key=key, json=body)
    assert status in (200, 201), answer


async def check(gw: Gateway, key: str, to: str, **extra: Any) -> dict[str, Any]:
    status, answer = await call(
        gw, "POST", "/v1/gate/check", key=key, json={**MARKETING, "to": to, **extra}
    )
    assert 200 == status, answer
    return answer  # type: ignore[no-any-return]


async def test_florida_marketing_at_2030_is_deferred_to_0800_and_california_is_allowed(
    ruled: Gateway,
) -> None:
    """20:30 in Miami is past Florida's 20:00: deferred to 08:00 the next morning, naming
    the rule; the same minute in San Francisco (17:30) is allowed; 08:00 itself is allowed."""
    key = await new_key(ruled, "read", "write")
    for number in (FLORIDA, CALIFORNIA):
        await opt_in(ruled, key, number, "offers", "a")
    florida = await check(ruled, key, FLORIDA, at=EVENING)
    assert (False, "deferred", "deferred") == (
        florida["allowed"],
        florida["verdict"],
        florida["reason"],
    )
    assert NEXT_MORNING == datetime.fromisoformat(florida["not_before"])
    assert "us_fl_telemarketing" in florida["detail"]
    california = await check(ruled, key, CALIFORNIA, at=EVENING)
    assert (True, "allowed", "opted_in") == (
        california["allowed"],
        california["verdict"],
        california["reason"],
    )
    assert "not_before" not in california
    morning = await check(ruled, key, FLORIDA, at=NEXT_MORNING.isoformat())
    assert "allowed" == morning["verdict"]
    minute_before = (NEXT_MORNING - timedelta(seconds=1)).isoformat()
    assert "deferred" == (await check(ruled, key, FLORIDA, at=minute_before))["verdict"]


async def test_consent_refusals_come_before_the_rules(ruled: Gateway) -> None:
    """No consent is ``no_consent`` at any hour: the rules only speak for consented people."""
    key = await new_key(ruled, "read")
    answer = await check(ruled, key, FLORIDA, at=EVENING)
    assert ("refused", "no_consent") == (answer["verdict"], answer["reason"])
    assert "not_before" not in answer


async def test_a_category_the_program_does_not_send_is_refused_for_the_whole_request(
    ruled: Gateway,
) -> None:
    """``reminders`` sends informational and healthcare_exempt: marketing is 422
    category_not_allowed, as is an unknown category; a listed one is answered."""
    key = await new_key(ruled, "read", "write")
    scope = {"sender": "12345", "program": "reminders", "channel": "sms", "to": CALIFORNIA}
    for category in ("marketing", "spam"):
        status, answer = await call(
            ruled, "POST", "/v1/gate/check", key=key, json={**scope, "category": category}
        )
        assert (422, "category_not_allowed") == (status, answer["error"]["code"]), answer
    # Not echoed back at any length, and never a 5xx: a string too long or not a string.
    bad: tuple[object, ...] = ("x" * 65_000, 7, ["marketing"])
    for wrong in bad:
        status, answer = await call(
            ruled, "POST", "/v1/gate/check", key=key, json={**scope, "category": wrong}
        )
        assert 400 == status, answer
        assert len(answer["error"]["message"]) < 200
    status, answer = await call(
        ruled,
        "POST",
        "/v1/gate/check",
        key=key,
        json={**scope, "category": "healthcare_exempt", "at": EVENING},
    )
    assert (200, "no_consent") == (status, answer["reason"])


@pytest.mark.parametrize(
    ("at", "why"),
    [
        ("tomorrow", "ISO 8601"),
        ("2026-12-04T01:30:00", "offset"),
        (12345, "ISO 8601"),
        ("2029-01-01T00:00:00Z", "within 400 days"),
    ],
)
async def test_a_bad_at_is_refused_with_a_4xx(ruled: Gateway, at: object, why: str) -> None:
    """``at`` must be an aware ISO 8601 instant within the rules' horizon: else 400/422,
    never a 5xx."""
    key = await new_key(ruled, "read")
    status, answer = await call(
        ruled, "POST", "/v1/gate/check", key=key, json={**MARKETING, "to": FLORIDA, "at": at}
    )
    assert status in (400, 422), answer
    assert why in answer["error"]["message"]


async def test_batch_answers_carry_verdicts_and_deferrals_in_order(ruled: Gateway) -> None:
    """One batch at 20:30 Miami time: Florida deferred, California allowed, an unknown
    number refused, a bad one invalid, in input order."""
    key = await new_key(ruled, "read", "write")
    for number in (FLORIDA, CALIFORNIA):
        await opt_in(ruled, key, number, "offers", "b")
    recipients = [FLORIDA, CALIFORNIA, "+13055550199", "not a number"]
    status, answer = await call(
        ruled,
        "POST",
        "/v1/gate/batch",
        key=key,
        json={**MARKETING, "to": recipients, "at": EVENING},
    )
    assert 200 == status, answer
    results = answer["results"]
    assert ["deferred", "allowed", "refused", "refused"] == [r["verdict"] for r in results]
    assert ["deferred", "opted_in", "no_consent", "invalid_address"] == [
        r["reason"] for r in results
    ]
    assert NEXT_MORNING == datetime.fromisoformat(results[0]["not_before"])


async def test_reported_sends_count_toward_florida_s_three_in_24_hours(ruled: Gateway) -> None:
    """Three marketing sends reported by an outside sender in the last hours fill Florida's
    cap of three a rolling day: the fourth is deferred to when the oldest is 24 hours old;
    the same reports for a California number change nothing (no cap there)."""
    key = await new_key(ruled, "read", "write", "send")
    for number in (FLORIDA, CALIFORNIA):
        await opt_in(ruled, key, number, "offers", "c")
    at = datetime(2026, 12, 3, 17, 0, tzinfo=UTC)  # 12:00 in Miami
    reports = [
        {
            **MARKETING,
            "recipient": number,
            "message_id": f"m-{number}-{hours}",
            "sent_at": (at - timedelta(hours=hours)).isoformat(),
        }
        for number in (FLORIDA, CALIFORNIA)
        for hours in (1, 2, 3)
    ]
    status, answer = await call(ruled, "POST", "/v1/sends", key=key, json={"reports": reports})
    assert (200, 6) == (status, answer["recorded"]), answer
    florida = await check(ruled, key, FLORIDA, at=at.isoformat())
    assert ("deferred", at - timedelta(hours=3) + timedelta(hours=24)) == (
        florida["verdict"],
        datetime.fromisoformat(florida["not_before"]),
    )
    assert "cap" in florida["detail"]
    assert "allowed" == (await check(ruled, key, CALIFORNIA, at=at.isoformat()))["verdict"]
    # Two of the three are older than 24 hours a day later: allowed again.
    later = (at + timedelta(hours=22)).isoformat()
    assert "allowed" == (await check(ruled, key, FLORIDA, at=later))["verdict"]


async def test_send_through_defers_to_the_window_and_an_opt_out_cancels_it(
    schema: str, redis_prefix: str
) -> None:
    """On the test clock at 20:30 Miami time, POST /v1/send to a Florida number is 202
    deferred to 08:00 with the outbox row waiting until then; California's leaves now; a
    STOP from the Florida number cancels the waiting row."""
    env = {"GATEWAY_TEST_CLOCK": EVENING}
    settings = rules_settings(schema, redis_prefix, env)
    async with Gateway(settings, catalogs=catalogs()) as gw:
        key = await new_key(gw, "send", "write")
        for number in (FLORIDA, CALIFORNIA):
            await opt_in(gw, key, number, "offers", "d")
        sent = {}
        for number in (FLORIDA, CALIFORNIA):
            body = {**MARKETING, "to": number, "body": "20% off flu shots. Reply STOP to end."}
            status, sent[number] = await call(gw, "POST", "/v1/send", key=key, json=body)
            assert 202 == status, sent[number]
        assert "deferred" == sent[FLORIDA]["status"]
        assert NEXT_MORNING == datetime.fromisoformat(sent[FLORIDA]["not_before"])
        assert "queued" == sent[CALIFORNIA]["status"]
        conn = await asyncpg.connect(PG_URL, server_settings={"search_path": schema})
        try:
            row = await conn.fetchrow(
                "SELECT status, next_attempt_at - now() AS wait FROM outbox WHERE id = $1",
                sent[FLORIDA]["outbox_id"],
            )
            assert row is not None
            assert "queued" == row["status"]
            assert timedelta(hours=11, minutes=29) < row["wait"] <= timedelta(hours=11, minutes=30)
            await gw.pipeline.handle(sms("STOP", contact=FLORIDA))
            status_after = await conn.fetchval(
                "SELECT status FROM outbox WHERE id = $1", sent[FLORIDA]["outbox_id"]
            )
            assert "cancelled" == status_after
        finally:
            await conn.close()


async def test_send_through_refused_by_a_rule_says_which(ruled: Gateway) -> None:
    """A send whose category the program does not carry is 422 category_not_allowed and
    queues nothing."""
    key = await new_key(ruled, "send", "write")
    body = {
        "sender": "12345",
        "program": "reminders",
        "channel": "sms",
        "to": CALIFORNIA,
        "body": "Sale!",
        "category": "marketing",
    }
    status, answer = await call(ruled, "POST", "/v1/send", key=key, json=body)
    assert (422, "category_not_allowed") == (status, answer["error"]["code"])


def test_answer_codes_cover_every_gate_reason() -> None:
    """Stored decisions keep one byte per answer: both tables agree and cover every reason."""
    assert ANSWER_CODES == dict(EDGE_CODES)
    assert {r.value for r in GateReason} == set(ANSWER_CODES)


def test_a_program_whose_basis_cannot_carry_its_category_stops_the_start(
    schema: str, redis_prefix: str
) -> None:
    """Marketing by SMS needs express written consent: a marketing program recording only
    express consent is refused at start, naming the sender and program."""
    from gateway.errors import ConfigError

    found = catalogs()
    raw = tomllib.loads((CONFIG.parent / "senders" / "12345.toml").read_text(encoding="utf-8"))
    raw["programs"]["reminders"]["categories"] = ["marketing"]
    found["12345"] = load_sender(raw, "senders/12345.toml")
    with pytest.raises(ConfigError, match=r"programs\.reminders: marketing by sms needs"):
        Gateway(rules_settings(schema, redis_prefix), catalogs=found)


class Provider:
    """A Twilio-compatible Messages.json recording each message's recipient, body and the
    real instant it arrived."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str, datetime]] = []
        self.url = ""

    async def messages(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.received.append((str(form["To"]), str(form["Body"]), datetime.now(UTC)))
        return web.json_response({"sid": f"SM{len(self.received)}"}, status=201)


@pytest.fixture
async def provider() -> AsyncIterator[Provider]:
    """The provider on an ephemeral port."""
    found = Provider()
    async with twilio_messages(found.messages) as found.url:
        yield found


async def test_a_deferred_send_leaves_at_0800_and_an_opt_out_at_2300_cancels_another(
    schema: str, redis_prefix: str, provider: Provider
) -> None:
    """The acceptance run, on a test clock 3,600 times real time from 20:30 Miami time:
    two Florida sends are deferred; one person texts STOP at 23:00; at 08:00 the other's
    message reaches the provider (within a few clock minutes: the outbox polls every 50 ms,
    three clock minutes), and the stopped person gets the STOP confirmation, not the offer."""
    stopping = "+13055550111"
    env = {
        "GATEWAY_TEST_CLOCK": EVENING,
        "GATEWAY_TEST_CLOCK_RATE": "3600",
        "GATEWAY_TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
    }
    settings = with_edges(
        rules_settings(schema, redis_prefix),
        env=env,
        providers={
            "twilio": {"base_url": provider.url, "account_sid": TWILIO_SID, "senders": ["12345"]}
        },
    )
    settings = dataclasses.replace(settings, outbox=FAST_OUTBOX)
    offer = "Flu shots 20% off this week. Reply STOP to end."
    async with Gateway(settings, catalogs=catalogs()) as gw:
        key = await new_key(gw, "send", "write")
        for number in (FLORIDA, stopping):
            await opt_in(gw, key, number, "offers", "e")
            body = {**MARKETING, "to": number, "body": offer}
            status, answer = await call(gw, "POST", "/v1/send", key=key, json=body)
            assert (202, "deferred") == (status, answer["status"]), answer
            assert NEXT_MORNING == datetime.fromisoformat(answer["not_before"])
        eleven_pm = datetime(2026, 12, 4, 4, 0, tzinfo=UTC)  # 23:00 EST
        await eventually(lambda: gw.clock.now() >= eleven_pm, timeout=10, message="23:00")
        await gw.pipeline.handle(sms("STOP", contact=stopping))

        def offered() -> bool:
            return any(body == offer for _, body, _ in provider.received)

        await eventually(offered, timeout=30, message="the deferred send never left")
        offers = [
            (to, gw.clock.from_real(at)) for to, body, at in provider.received if body == offer
        ]
        assert [FLORIDA] == [to for to, _ in offers]
        left = offers[0][1]
        assert NEXT_MORNING <= left < NEXT_MORNING + timedelta(minutes=10), left
        to_stopping = [body for to, body, _ in provider.received if to == stopping]
        assert offer not in to_stopping
        assert "unsubscribed" in to_stopping[-1]


async def test_unreadable_send_history_defers_capped_sends_and_allows_the_rest(
    ruled: Gateway,
) -> None:
    """With the send history unreadable (its table renamed away under the running gateway,
    a real PostgreSQL error), a Florida marketing send at noon cannot have its cap checked:
    deferred five minutes, never allowed; California has no cap and is still allowed."""
    key = await new_key(ruled, "read", "write")
    for number in (FLORIDA, CALIFORNIA):
        await opt_in(ruled, key, number, "offers", "f")
    noon = datetime(2026, 12, 3, 17, 0, tzinfo=UTC)
    assert "allowed" == (await check(ruled, key, FLORIDA, at=noon.isoformat()))["verdict"]
    conn = await asyncpg.connect(
        PG_URL, server_settings={"search_path": ruled.settings.database.schema}
    )
    try:
        await conn.execute("ALTER TABLE send_reports RENAME TO send_reports_away")
        florida = await check(ruled, key, FLORIDA, at=noon.isoformat())
        assert ("deferred", noon + timedelta(minutes=5)) == (
            florida["verdict"],
            datetime.fromisoformat(florida["not_before"]),
        )
        assert "send history" in florida["detail"]
        assert "allowed" == (await check(ruled, key, CALIFORNIA, at=noon.isoformat()))["verdict"]
    finally:
        await conn.execute("ALTER TABLE send_reports_away RENAME TO send_reports")
        await conn.close()
    assert "allowed" == (await check(ruled, key, FLORIDA, at=noon.isoformat()))["verdict"]
