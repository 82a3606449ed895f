"""The admin API holds sender definitions to the schema's limits, over real HTTP."""

from __future__ import annotations

import copy
import tomllib
from typing import Any

import asyncpg
from api_helpers import call, new_key
from support import CONFIG

from gateway.app import Gateway


def _definition() -> dict[str, Any]:
    raw = tomllib.loads((CONFIG.parent / "senders" / "12345.toml").read_text(encoding="utf-8"))
    return copy.deepcopy(raw)


async def test_a_huge_title_or_crlf_in_a_brand_is_refused_and_changes_nothing(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """PUT /v1/admin/senders/12345 with a 100,000-character program title, CR LF in the
    brand (it becomes the From header of confirmation mail), a bidi override in a title or
    a 41-character keyword: 422 invalid_sender naming the key, nothing stored, the served
    catalog unchanged. The same definition without the fault is accepted."""
    key = await new_key(gateway, "admin")
    faults: list[tuple[str, dict[str, Any]]] = []
    title = _definition()
    title["programs"]["reminders"]["title"] = "T" * 100_000
    faults.append(("programs.reminders.title", title))
    brand = _definition()
    brand["brand"] = "Acme\r\nBcc: everyone@example.org"
    faults.append(("brand", brand))
    bidi = _definition()
    bidi["programs"]["flu"]["title"] = "Acme Flu \u202estrela"
    faults.append(("programs.flu.title", bidi))
    word = _definition()
    word["programs"]["flu"]["keywords"] = ["F" * 41]
    faults.append(("programs.flu.keywords", word))
    served = gateway.catalogs["12345"]
    for where, definition in faults:
        status, answer = await call(
            gateway, "PUT", "/v1/admin/senders/12345", key=key, json=definition
        )
        assert (422, "invalid_sender") == (status, answer["error"]["code"]), where
        assert f"{where}:" in answer["error"]["message"]
    assert 0 == await db.fetchval("SELECT count(*) FROM sender_overrides")
    assert served is gateway.catalogs["12345"]
    fine = _definition()
    fine["programs"]["reminders"]["title"] = "T" * 100
    status, _ = await call(gateway, "PUT", "/v1/admin/senders/12345", key=key, json=fine)
    assert 200 == status
