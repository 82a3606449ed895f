"""``GET /v1/consent/expiring`` over real HTTP and PostgreSQL: a ``read`` key lists the
consents whose basis lapses within ``days``; no key is 401, a key without the scope 403,
and a bad ``days`` or sender the API's one error shape.

The ``offers`` program records implied consent from an inquiry (six months); the consents
are made now and their start moved back by SQL (tests/expiry_support.py).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from urllib.parse import quote

import asyncpg
import pytest
from api_helpers import call, new_key
from expiry_support import OFFERS, move_since, opt_in, write_senders
from support import make_settings

from gateway.app import Gateway
from gateway.settings import Settings

PATH = "/v1/consent/expiring"


@pytest.fixture
def settings(schema: str, redis_prefix: str, tmp_path: Path) -> Settings:
    """The test settings, with the ``offers`` sender beside the shipped ones."""
    return dataclasses.replace(
        make_settings(schema, redis_prefix), senders_dir=write_senders(tmp_path / "senders")
    )


async def test_a_read_key_lists_what_lapses_within_the_days_asked(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """Started six months less five days ago (moved back by SQL), a consent lapses in about
    five days: listed for ``days=10``, not for ``days=3``; one started a month ago is not
    listed within ten days either."""
    await opt_in(gateway, "soon@example.org")
    await opt_in(gateway, "later@example.org")
    await move_since(db, "soon@example.org", "now() - interval '6 months' + interval '5 days'")
    await move_since(db, "later@example.org", "now() - interval '1 month'")
    key = await new_key(gateway, "read")

    status, body = await call(gateway, "GET", f"{PATH}?days=10&sender={quote(OFFERS)}", key=key)

    assert 200 == status
    assert (10, OFFERS) == (body["days"], body["sender"])
    assert [("email", OFFERS, "offers", "soon@example.org", "implied_inquiry")] == [
        (i["channel"], i["sender"], i["program"], i["address"], i["basis"]) for i in body["items"]
    ]
    item = body["items"][0]
    assert item["since"] < body["at"] < item["expires_at"]
    status, body = await call(gateway, "GET", f"{PATH}?days=3", key=key)
    assert (200, []) == (status, body["items"])
    status, body = await call(gateway, "GET", f"{PATH}?days=3650", key=key)
    assert ["soon@example.org", "later@example.org"] == [i["address"] for i in body["items"]]


async def test_no_key_is_401_and_a_key_without_read_is_403(gateway: Gateway) -> None:
    """The route takes the ``read`` scope, in the API's error shape."""
    status, body = await call(gateway, "GET", f"{PATH}?days=30")
    assert (401, "unauthorized") == (status, body["error"]["code"])
    status, body = await call(gateway, "GET", f"{PATH}?days=30", key="not-a-key")
    assert 401 == status
    write_only = await new_key(gateway, "write")
    status, body = await call(gateway, "GET", f"{PATH}?days=30", key=write_only)
    assert (403, "forbidden") == (status, body["error"]["code"])
    admin = await new_key(gateway, "admin")
    assert 200 == (await call(gateway, "GET", f"{PATH}?days=30", key=admin))[0]


@pytest.mark.parametrize(
    "query", ["", "?days=", "?days=3651", "?days=-1", "?days=1.5", "?days=٣", "?days=1&days=2"]
)
async def test_days_outside_0_to_3650_is_400(gateway: Gateway, query: str) -> None:
    """``days`` is required, once, as ASCII digits in 0..3650."""
    key = await new_key(gateway, "read")
    status, body = await call(gateway, "GET", f"{PATH}{query}", key=key)
    assert (400, "bad_request") == (status, body["error"]["code"])


async def test_an_unknown_sender_is_422_and_days_0_lists_nothing(gateway: Gateway) -> None:
    """A sender no catalog holds is refused; ``days=0`` is the empty window [now, now)."""
    key = await new_key(gateway, "read")
    status, body = await call(gateway, "GET", f"{PATH}?days=30&sender=nobody", key=key)
    assert (422, "unknown_sender") == (status, body["error"]["code"])
    status, body = await call(gateway, "GET", f"{PATH}?days=0", key=key)
    assert (200, []) == (status, body["items"])


async def test_the_route_is_described_with_its_scope_and_parameters(gateway: Gateway) -> None:
    """/openapi.json documents the route: an API key, ``days`` required with its range."""
    _, document = await call(gateway, "GET", "/openapi.json")
    op = document["paths"][PATH]["get"]
    days = next(p for p in op["parameters"] if p["name"] == "days")
    assert [{"apiKey": []}] == op["security"]
    assert (True, 0, 3650) == (
        days["required"],
        days["schema"]["minimum"],
        days["schema"]["maximum"],
    )
    assert (
        "#/components/schemas/ExpiringConsents"
        == (op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"])
    )
