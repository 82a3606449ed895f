"""Consents that lapse soon, read from the real PostgreSQL (gateway/store/consent_expiry.py).

The ``offers`` program records implied consent from an inquiry (six months, CASL
s.10(10)(e)). Consents are made through the pipeline now; each test then moves their start
back with SQL (``UPDATE consent SET updated_at``, tests/expiry_support.py) and asks for the
consents lapsing within some days of a fixed instant.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from expiry_support import OFFERS, move_since, opt_in, opt_out, write_senders
from support import make_settings, sms

from gateway.app import Gateway
from gateway.messages import Method
from gateway.settings import Settings
from gateway.store.consent_expiry import program_bases, read_expiring
from rules.loading import load_rules
from rules.model import Basis, Duration

AT = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


@pytest.fixture
def settings(schema: str, redis_prefix: str, tmp_path: Path) -> Settings:
    """The test settings, with the ``offers`` sender beside the shipped ones."""
    return dataclasses.replace(
        make_settings(schema, redis_prefix), senders_dir=write_senders(tmp_path / "senders")
    )


def _durations(gateway: Gateway) -> dict[Basis, Duration]:
    return dict(load_rules(Path(gateway.settings.rules.shipped_dir)).durations)


async def _listed(
    gateway: Gateway, db: asyncpg.Connection, days: int, sender: str | None = None
) -> list[tuple[str, str, str]]:
    found = await read_expiring(
        db,
        at=AT,
        days=days,
        durations=_durations(gateway),
        bases=program_bases(gateway.catalogs),
        sender=sender,
    )
    return [(e.address, e.basis, e.expires_at.isoformat()) for e in found]


async def test_implied_inquiry_consents_are_listed_only_within_their_last_days(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """Six months after its start an inquiry's consent lapses, on the same instant (the day
    clamped to a shorter month's end); it is listed when that instant is in [at, at + days)
    and not otherwise. Lapsed, opted-out and express consents are never listed."""
    for address in ("soon@example.org", "feb@example.org", "gone@example.org", "left@example.org"):
        await opt_in(gateway, address)
    await opt_out(gateway, "left@example.org")
    await gateway.pipeline.handle(sms("START"))  # 12345 reminders: express, never lapses
    # The starts are moved back by SQL (the consents were made a moment ago).
    await move_since(db, "soon@example.org", datetime(2026, 6, 13, 12, 0, tzinfo=UTC))
    await move_since(db, "feb@example.org", datetime(2026, 8, 31, 12, 0, tzinfo=UTC))
    await move_since(db, "gone@example.org", datetime(2026, 6, 1, 12, 0, tzinfo=UTC))
    await move_since(db, "left@example.org", datetime(2026, 6, 13, 12, 0, tzinfo=UTC))
    await db.execute("UPDATE consent SET updated_at = '2026-06-13T12:00Z' WHERE sender = '12345'")

    soon = ("soon@example.org", "implied_inquiry", "2026-12-13T12:00:00+00:00")
    feb = ("feb@example.org", "implied_inquiry", "2027-02-28T12:00:00+00:00")
    assert [] == await _listed(gateway, db, 10)  # lapses exactly 10 days on: outside
    assert [soon] == await _listed(gateway, db, 11)
    assert [soon] == await _listed(gateway, db, 87)  # 28 February 12:00 is 87 days on
    assert [soon, feb] == await _listed(gateway, db, 88)
    assert [soon, feb] == await _listed(gateway, db, 3650)
    assert [soon, feb] == await _listed(gateway, db, 3650, sender=OFFERS)
    assert [] == await _listed(gateway, db, 3650, sender="12345")
    assert [] == await _listed(gateway, db, 0)


async def test_the_ledger_names_the_basis_and_an_import_counts_from_its_original_time(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """The opt-in's ledger evidence says ``implied_inquiry``; an imported consent lapses six
    months after the time the other system recorded it, not after the import."""
    await opt_in(
        gateway,
        "imported@example.org",
        method=Method.IMPORT,
        evidence={"original_time": "2026-06-20T09:30:00+00:00", "source_system": "listmonk"},
    )
    # The import itself is moved to 2026-11-01 (after the original time), by SQL.
    await move_since(db, "imported@example.org", datetime(2026, 11, 1, tzinfo=UTC))
    evidence = json.loads(
        await db.fetchval("SELECT evidence::text FROM ledger WHERE program = 'offers'")
    )
    assert ("implied_inquiry", "listmonk") == (evidence["basis"], evidence["source_system"])

    found = await read_expiring(
        db,
        at=AT,
        days=30,
        durations=_durations(gateway),
        bases=program_bases(gateway.catalogs),
    )
    assert [("email", OFFERS, "offers", "imported@example.org", "implied_inquiry")] == [
        (e.channel, e.sender, e.program, e.address, e.basis) for e in found
    ]
    assert "2026-06-20T09:30:00+00:00" == found[0].since.isoformat()
    assert "2026-12-20T09:30:00+00:00" == found[0].expires_at.isoformat()
