"""Send rules changed through the admin API, through real HTTP: a document PUT on one
instance is validated as an ``[rules] operator_dir`` file would be, audited, and answers
on another instance's gate without a restart; a weaker one is refused and changes nothing
(docs/rules.md, "Operators: adding and replacing rules").

Numbers and instants as in test_api_rules.py: +1305 is Miami, where shipped marketing
hours are 08:00-20:00; 08:30 EST on 2026-12-04 is inside them and outside 09:00-20:00.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
from api_helpers import call, new_key
from support import eventually
from test_api_rules import FLORIDA, catalogs, check, opt_in, rules_settings

from gateway.app import Gateway
from gateway.settings import SOURCE_RULES

MORNING = "2026-12-04T13:30:00+00:00"  # 08:30 in Miami (EST, UTC-5)
NINE = datetime(2026, 12, 4, 14, 0, tzinfo=UTC)  # 09:00 in Miami
SHIPPED_FLORIDA = (SOURCE_RULES / "florida.toml").read_text(encoding="utf-8")
STRICTER = SHIPPED_FLORIDA.replace('daily = "08:00-20:00"', 'daily = "09:00-20:00"')
WEAKER = SHIPPED_FLORIDA.replace('daily = "08:00-20:00"', 'daily = "07:00-20:00"')
TOML = {"Content-Type": "application/toml"}
PATH = "/v1/admin/rules/florida_hours"


async def put(gw: Gateway, key: str, path: str, text: str) -> tuple[int, Any]:
    return await call(gw, "PUT", path, key=key, data=text.encode(), headers=TOML)


async def verdict(gw: Gateway, key: str) -> str:
    return str((await check(gw, key, FLORIDA, at=MORNING))["verdict"])


async def test_stricter_florida_window_put_on_one_instance_defers_on_the_other(
    schema: str, redis_prefix: str, db: asyncpg.Connection
) -> None:
    """A Florida window of 09:00-20:00 PUT on A defers B's 08:30 marketing send to 09:00,
    naming the rule; an instance started afterwards serves it from its start; a weaker
    window (07:00) is 422 naming the key and changes nothing anywhere; a request's terms
    taken before a swap keep answering as they did; DELETE restores the shipped 08:00.
    Each accepted change is one audit row."""
    settings = rules_settings(schema, redis_prefix)
    async with (
        Gateway(settings, catalogs=catalogs()) as a,
        Gateway(settings, catalogs=catalogs()) as b,
    ):
        admin = await new_key(a, "admin")
        await opt_in(a, admin, FLORIDA, "offers", "rules")
        assert "allowed" == await verdict(b, admin)
        before = b.send_rules.terms(
            b.catalogs["12345"], "offers", at=datetime.fromisoformat(MORNING)
        )

        status, answer = await put(a, admin, PATH, STRICTER)
        assert (200, {"name": "florida_hours", "revision": 1}) == (status, answer)
        await eventually(
            lambda: _is(b, admin, "deferred"),
            message="the stricter window did not reach the other instance",
        )
        deferred = await check(b, admin, FLORIDA, at=MORNING)
        assert ("deferred", NINE) == (
            deferred["verdict"],
            datetime.fromisoformat(deferred["not_before"]),
        )
        assert "us_fl_telemarketing" in deferred["detail"]
        # The terms taken before the swap answer from the rules they were taken under.
        assert "allowed" == before.batch.answers["+1305"].verdict.value  # type: ignore[union-attr]

        status, answer = await put(a, admin, PATH, WEAKER)
        assert (422, "invalid_rules") == (status, answer["error"]["code"])
        where = "stored:florida_hours: rules.us_fl_telemarketing.windows.mon"
        assert where in answer["error"]["message"]
        assert "deferred" == await verdict(a, admin)
        assert "deferred" == await verdict(b, admin)

        status, listing = await call(b, "GET", "/v1/admin/rules", key=admin)
        assert 200 == status
        florida = next(r for r in listing["rules"] if r["id"] == "us_fl_telemarketing")
        assert {"layer": "stored", "name": "florida_hours"} == florida["defined_in"]
        assert {"from": "2021-07-01", "until": None} == florida["effective"]
        federal = next(r for r in listing["rules"] if r["id"] == "us_tcpa_hours")
        assert {"layer": "shipped", "name": "us_federal.toml"} == federal["defined_in"]
        assert ["florida_hours"] == listing["serving"]
        assert [("florida_hours", 1, STRICTER)] == [
            (d["name"], d["revision"], d["toml"]) for d in listing["documents"]
        ]

        async with Gateway(settings, catalogs=catalogs()) as later:
            assert "deferred" == await verdict(later, admin)  # loaded at start, no wait

        status, answer = await call(a, "DELETE", PATH, key=admin)
        assert (200, 1) == (status, answer["deleted_revision"])
        await eventually(
            lambda: _is(b, admin, "allowed"),
            message="the deletion did not reach the other instance",
        )
        assert "allowed" == await verdict(a, admin)
        status, _ = await call(a, "DELETE", PATH, key=admin)
        assert 404 == status

    rows = await db.fetch(
        "SELECT action, target, detail::jsonb ->> 'revision' AS revision FROM admin_audit"
        " WHERE action LIKE 'rules.%' ORDER BY id"
    )
    assert [("rules.update", "florida_hours", "1"), ("rules.delete", "florida_hours", "1")] == [
        (r["action"], r["target"], r["revision"]) for r in rows
    ]
    assert 0 == await db.fetchval("SELECT count(*) FROM rule_overrides")


async def _is(gw: Gateway, key: str, expected: str) -> bool:
    return await verdict(gw, key) == expected


async def test_refused_documents_change_nothing(
    schema: str, redis_prefix: str, db: asyncpg.Connection
) -> None:
    """A window that never opens, a rule another stored document already defines, an
    empty document, text that is not TOML and arrays nested past the parser's depth are
    each 422 invalid_rules naming where;
    a JSON body is 415; a bad name 400. Nothing is stored or audited."""
    async with Gateway(rules_settings(schema, redis_prefix), catalogs=catalogs()) as gw:
        admin = await new_key(gw, "admin")
        extra = """
[rules.house_fl_late]
title = "House: no marketing texts to Florida after 19:00"
jurisdiction = "US-FL"
presume_by_area_code = true
channels = ["sms"]
categories = ["marketing"]
sources = [{ citation = "House policy", url = "https://example.org/p", checked = "n/a" }]

[rules.house_fl_late.windows]
daily = "08:00-19:00"
"""
        status, _ = await put(gw, admin, "/v1/admin/rules/house", extra)
        assert 200 == status
        closed = extra.replace('daily = "08:00-19:00"', 'daily = "closed"')
        cases = [
            ("/v1/admin/rules/closed", closed, "rules.house_fl_late.windows"),
            ("/v1/admin/rules/again", extra, "rules.house_fl_late: is already defined"),
            ("/v1/admin/rules/empty", "# nothing\n", "defines no rule"),
            ("/v1/admin/rules/broken", "[rules", "invalid TOML"),
            # tomllib parses arrays recursively: this depth raised RecursionError (a 500).
            ("/v1/admin/rules/deep", "a = " + "[" * 20_000 + "]" * 20_000, "nested too deeply"),
        ]
        for path, text, where in cases:
            status, answer = await put(gw, admin, path, text)
            assert (422, "invalid_rules") == (status, answer["error"]["code"]), path
            assert where in answer["error"]["message"], answer
        status, _ = await call(gw, "PUT", "/v1/admin/rules/json", key=admin, json={"toml": extra})
        assert 415 == status
        status, _ = await put(gw, admin, "/v1/admin/rules/Bad.Name", extra)
        assert 400 == status
        names = [r["name"] for r in await db.fetch("SELECT name FROM rule_overrides")]
        assert ["house"] == names
        assert 1 == await db.fetchval(
            "SELECT count(*) FROM admin_audit WHERE action LIKE 'rules.%'"
        )


async def test_rules_admin_needs_the_admin_scope(
    schema: str, redis_prefix: str, db: asyncpg.Connection
) -> None:
    """Without a key 401, with a key lacking ``admin`` 403, on every rules route; nothing
    is stored."""
    async with Gateway(rules_settings(schema, redis_prefix), catalogs=catalogs()) as gw:
        write = await new_key(gw, "read", "write", "send")
        routes = [("GET", "/v1/admin/rules"), ("PUT", PATH), ("DELETE", PATH)]
        for method, path in routes:
            for key, expected in ((None, 401), (write, 403)):
                status, _ = await call(
                    gw, method, path, key=key, data=STRICTER.encode(), headers=TOML
                )
                assert expected == status, (method, path, key)
    assert 0 == await db.fetchval("SELECT count(*) FROM rule_overrides")
