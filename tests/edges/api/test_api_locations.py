"""Recorded locations through real HTTP: PUT /v1/contacts/location, and the gate placing the
person by the record instead of the area code (docs/rules.md, "Local time", "Jurisdiction").

Every gate question names a fixed instant (``at``), so nothing depends on the hour the tests
run at. The gateway runs with the send rules on and the marketing program ``offers`` of
tests/edges/api/test_api_rules.py.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from api_helpers import call, new_key
from support import PG_URL, eventually
from test_api_rules import EVENING, FLORIDA, MARKETING, catalogs, opt_in, rules_settings

from gateway.app import Gateway

SAN_FRANCISCO = "+14155550188"
# 2026-12-04 02:30 UTC: 21:30 in New York, 18:30 in San Francisco (both standard time).
NEW_YORK_LATE = "2026-12-04T02:30:00+00:00"
NEW_YORK_0800 = datetime(2026, 12, 4, 13, 0, tzinfo=UTC)
NEW_YORK = "America/New_York"


@pytest.fixture
async def ruled(schema: str, redis_prefix: str) -> AsyncIterator[Gateway]:
    """A gateway with the send rules on and the ``offers`` program."""
    async with Gateway(rules_settings(schema, redis_prefix), catalogs=catalogs()) as gw:
        yield gw


async def locate(gw: Gateway, key: str, contact: str, **fields: Any) -> tuple[int, Any]:
    body = {"channel": "sms", "contact": contact, **fields}
    return await call(gw, "PUT", "/v1/contacts/location", key=key, json=body)


async def verdicts(gw: Gateway, key: str, to: list[str], at: str) -> list[dict[str, Any]]:
    """The batch gate's answers for ``to`` at ``at`` (the path mass sends take)."""
    status, answer = await call(
        gw, "POST", "/v1/gate/batch", key=key, json={**MARKETING, "to": to, "at": at}
    )
    assert 200 == status, answer
    return answer["results"]  # type: ignore[no-any-return]


async def test_a_recorded_zone_decides_the_hours_and_clearing_restores_the_area_code(
    ruled: Gateway,
) -> None:
    """A +1415 number recorded in America/New_York is deferred at 21:30 New York time (past
    the federal 21:00) to 08:00 New York time, although it is 18:30 in San Francisco; an
    unrecorded +1415 number in the same batch is allowed; clearing the record allows it."""
    key = await new_key(ruled, "read", "write")
    other = "+14155550189"
    for number in (SAN_FRANCISCO, other):
        await opt_in(ruled, key, number, "offers", "loc-zone")
    status, answer = await locate(ruled, key, SAN_FRANCISCO, time_zone=NEW_YORK)
    assert (200, "recorded", None, NEW_YORK) == (
        status,
        answer["status"],
        answer["state"],
        answer["time_zone"],
    ), answer

    first, second = await verdicts(ruled, key, [SAN_FRANCISCO, other], NEW_YORK_LATE)
    assert ("deferred", "deferred") == (first["verdict"], first["reason"]), first
    assert NEW_YORK_0800 == datetime.fromisoformat(first["not_before"])
    assert "us_tcpa_hours" in first["detail"]
    assert "allowed" == second["verdict"], second

    status, answer = await locate(ruled, key, SAN_FRANCISCO, time_zone=None)
    assert (200, "cleared") == (status, answer["status"]), answer
    first, second = await verdicts(ruled, key, [SAN_FRANCISCO, other], NEW_YORK_LATE)
    assert ["allowed", "allowed"] == [first["verdict"], second["verdict"]]


async def test_a_recorded_state_does_not_rebut_florida_s_area_code_presumption(
    ruled: Gateway,
) -> None:
    """A +1305 (Miami) number recorded in New York still gets Florida's 08:00-20:00: at 20:30
    it is deferred by the Florida rule (Fla. Stat. 501.059 presumes the area code's state)."""
    key = await new_key(ruled, "read", "write")
    await opt_in(ruled, key, FLORIDA, "offers", "loc-state")
    status, answer = await locate(ruled, key, FLORIDA, state="US-NY")
    assert (200, "US-NY", None) == (status, answer["state"], answer["time_zone"]), answer
    (found,) = await verdicts(ruled, key, [FLORIDA], EVENING)
    assert "deferred" == found["verdict"], found
    assert "us_fl_telemarketing" in found["detail"]
    assert datetime(2026, 12, 4, 13, 0, tzinfo=UTC) == datetime.fromisoformat(found["not_before"])


async def test_a_recorded_state_alone_gives_the_state_s_zones(ruled: Gateway) -> None:
    """A +1415 number recorded in New York, with no zone, is read in New York's zone: the
    single check answers as the batch does."""
    key = await new_key(ruled, "read", "write")
    await opt_in(ruled, key, SAN_FRANCISCO, "offers", "loc-state-zone")
    assert 200 == (await locate(ruled, key, SAN_FRANCISCO, state="US-NY"))[0]
    status, answer = await call(
        ruled,
        "POST",
        "/v1/gate/check",
        key=key,
        json={**MARKETING, "to": SAN_FRANCISCO, "at": NEW_YORK_LATE},
    )
    assert (200, "deferred") == (status, answer["verdict"]), answer


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"time_zone": "America/Gotham"}, 422, "invalid_time_zone"),
        ({"time_zone": "america/new_york"}, 422, "invalid_time_zone"),
        ({"time_zone": "x" * 5_000}, 422, "invalid_time_zone"),
        ({"state": "US-XX"}, 422, "invalid_state"),
        ({"state": "Florida"}, 422, "invalid_state"),
        ({"state": "us-fl"}, 422, "invalid_state"),
        ({"state": 12}, 400, "bad_request"),
        ({"timezone": NEW_YORK}, 400, "bad_request"),
    ],
)
async def test_a_bad_state_or_zone_is_refused_and_records_nothing(
    ruled: Gateway, fields: dict[str, Any], status: int, code: str
) -> None:
    """Values the rules' data does not know are 422 with a stable code, a wrong type or an
    unknown field 400; the contact keeps no record."""
    key = await new_key(ruled, "read", "write")
    await opt_in(ruled, key, SAN_FRANCISCO, "offers", "loc-bad")
    found, answer = await locate(ruled, key, SAN_FRANCISCO, **fields)
    assert (status, code) == (found, answer["error"]["code"]), answer
    async with ruled.pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT state, time_zone FROM contacts WHERE address = $1", SAN_FRANCISCO
        )
    assert row is not None
    assert (None, None) == (row["state"], row["time_zone"])


async def test_unknown_and_erased_contacts_and_a_read_key_are_refused(ruled: Gateway) -> None:
    """An address no contact has is 422 unknown_contact (a record never creates a contact);
    an erased one 422 suppressed; a key without ``write`` 403."""
    key = await new_key(ruled, "read", "write")
    admin = await new_key(ruled, "admin")
    status, answer = await locate(ruled, key, "+14155550177", time_zone=NEW_YORK)
    assert (422, "unknown_contact") == (status, answer["error"]["code"]), answer

    await opt_in(ruled, key, SAN_FRANCISCO, "offers", "loc-erased")
    status, _ = await call(
        ruled,
        "POST",
        "/v1/privacy/erase",
        key=admin,
        json={"channel": "sms", "contact": SAN_FRANCISCO},
    )
    assert 200 == status
    status, answer = await locate(ruled, key, SAN_FRANCISCO, time_zone=NEW_YORK)
    assert (422, "suppressed") == (status, answer["error"]["code"]), answer

    reader = await new_key(ruled, "read")
    status, answer = await locate(ruled, reader, FLORIDA, state="US-NY")
    assert (403, "forbidden") == (status, answer["error"]["code"])


async def test_each_change_is_in_the_audit_log_by_contact_id_and_erasure_removes_it(
    ruled: Gateway,
) -> None:
    """Recording and clearing each write an audit row naming the contact id, the actor, the
    values before and after, and never the number; an erasure clears the columns."""
    key = await new_key(ruled, "read", "write")
    admin = await new_key(ruled, "admin")
    await opt_in(ruled, key, SAN_FRANCISCO, "offers", "loc-audit")
    _, first = await locate(ruled, key, SAN_FRANCISCO, state="US-NY", time_zone=NEW_YORK)
    await locate(ruled, key, SAN_FRANCISCO, state=None)
    status, log = await call(ruled, "GET", "/v1/admin/audit?limit=10", key=admin)
    assert 200 == status, log
    rows = [r for r in log["records"] if r["action"] == "contact.location"]
    assert [f"contact:{first['contact_id']}"] * 2 == [r["target"] for r in rows]
    assert all(r["actor"] for r in rows)
    assert {
        "channel": "sms",
        "state": None,
        "time_zone": None,
        "previous": {"state": "US-NY", "time_zone": NEW_YORK},
    } == rows[0]["detail"]
    assert {"state": None, "time_zone": None} == rows[1]["detail"]["previous"]
    assert all(SAN_FRANCISCO[2:] not in json.dumps(r) for r in rows)

    await locate(ruled, key, SAN_FRANCISCO, time_zone=NEW_YORK)
    status, _ = await call(
        ruled,
        "POST",
        "/v1/privacy/erase",
        key=admin,
        json={"channel": "sms", "contact": SAN_FRANCISCO},
    )
    assert 200 == status
    async with ruled.pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT state, time_zone FROM contacts WHERE id = $1", first["contact_id"]
        )
    assert row is not None
    assert (None, None) == (row["state"], row["time_zone"])


async def test_a_record_made_on_one_instance_reaches_the_other_s_gate(
    schema: str, redis_prefix: str
) -> None:
    """Two instances on one schema: B places nobody by a record until A records one; then
    B's gate defers the New York-recorded +1415 number, once A's NOTIFY has arrived."""
    settings = rules_settings(schema, redis_prefix)
    async with (
        Gateway(settings, catalogs=catalogs()) as a,
        Gateway(settings, catalogs=catalogs()) as b,
    ):
        key = await new_key(a, "read", "write")
        await opt_in(a, key, SAN_FRANCISCO, "offers", "loc-two")
        seen = b.gate.locations
        assert seen is not None
        assert not seen.located("sms")
        assert "allowed" == (await verdicts(b, key, [SAN_FRANCISCO], NEW_YORK_LATE))[0]["verdict"]
        assert 200 == (await locate(a, key, SAN_FRANCISCO, time_zone=NEW_YORK))[0]
        await eventually(lambda: seen.located("sms") or None, message="no NOTIFY")
        assert "deferred" == (await verdicts(b, key, [SAN_FRANCISCO], NEW_YORK_LATE))[0]["verdict"]
        # Clearing the last record turns the per-chunk read off again.
        assert 200 == (await locate(a, key, SAN_FRANCISCO, time_zone=None))[0]
        await eventually(lambda: not seen.located("sms") or None, message="no NOTIFY")
        conn = await asyncpg.connect(PG_URL, server_settings={"search_path": schema})
        try:
            located = await conn.fetchval(
                "SELECT count(*) FROM contacts WHERE state IS NOT NULL OR time_zone IS NOT NULL"
            )
        finally:
            await conn.close()
        assert 0 == located


async def test_an_email_contact_is_located_under_its_folded_key(ruled: Gateway) -> None:
    """Email: the address is taken as the gate keys it (case folded), so a record made with
    another spelling lands on the one contact; a zone is accepted, an erased address is
    refused."""
    key = await new_key(ruled, "read", "write")
    admin = await new_key(ruled, "admin")
    body = {
        "channel": "email",
        "sender": "news@lists.acme-health.example",
        "program": "newsletter",
        "contact": "Ann@Example.ORG",
        "action": "opt_in",
        "method": "api",
        "idempotency_key": "loc-email",
    }
    assert 200 == (await call(ruled, "POST", "/v1/consent", key=key, json=body))[0]
    record = {"channel": "email", "contact": "ANN@example.org", "time_zone": "Europe/Berlin"}
    status, answer = await call(ruled, "PUT", "/v1/contacts/location", key=key, json=record)
    assert (200, "recorded") == (status, answer["status"]), answer
    async with ruled.pool.acquire() as conn:
        rows = await conn.fetch("SELECT address, time_zone FROM contacts WHERE channel = 'email'")
    assert [("ann@example.org", "Europe/Berlin")] == [tuple(r) for r in rows]
    erase = {"channel": "email", "contact": "ann@example.org"}
    assert 200 == (await call(ruled, "POST", "/v1/privacy/erase", key=admin, json=erase))[0]
    status, answer = await call(ruled, "PUT", "/v1/contacts/location", key=key, json=record)
    assert (422, "suppressed") == (status, answer["error"]["code"]), answer
