"""The ledger's hash chain: `audit verify` passes on an honest ledger and catches every tamper."""

from __future__ import annotations

import asyncpg
import pytest
from support import sms

from gateway.app import Gateway
from gateway.store.ledger import verify


async def _fill(gateway: Gateway) -> None:
    for i, text in enumerate(["START", "STOP", "START", "FLU", "YES", "STOP FLU"]):
        await gateway.pipeline.handle(sms(text, contact=f"+1415555{i % 2:04d}"))


async def _unlock(db: asyncpg.Connection) -> None:
    """What an attacker with table rights would do first: switch off the append-only triggers."""
    await db.execute("ALTER TABLE ledger DISABLE TRIGGER USER")


async def test_honest_ledger_verifies(gateway: Gateway, db: asyncpg.Connection) -> None:
    """Every event links to the one before and the head matches the last event."""
    await _fill(gateway)
    report = await verify(db)
    assert (True, ()) == (report.ok, report.problems)
    assert 5 == report.events  # START, FLU (pending); STOP (two programs), YES


async def test_ledger_refuses_update_and_delete(gateway: Gateway, db: asyncpg.Connection) -> None:
    """The database itself refuses to change or remove a ledger row."""
    await _fill(gateway)
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await db.execute("UPDATE ledger SET action = 'opt_in' WHERE seq = 2")
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await db.execute("DELETE FROM ledger WHERE seq = 2")


async def test_altered_row_is_detected(gateway: Gateway, db: asyncpg.Connection) -> None:
    """Flipping an opt-out into an opt-in breaks that row's hash."""
    await _fill(gateway)
    await _unlock(db)
    await db.execute("UPDATE ledger SET action = 'opt_in', new_state = 'opted_in' WHERE seq = 2")
    report = await verify(db)
    assert not report.ok
    assert any(p.startswith("seq 2:") and "altered" in p for p in report.problems)


async def test_altered_evidence_is_detected(gateway: Gateway, db: asyncpg.Connection) -> None:
    """Evidence is covered through its digest: editing the recorded text is caught."""
    await _fill(gateway)
    await _unlock(db)
    await db.execute(
        "UPDATE ledger SET evidence = jsonb_set(evidence, '{text}', '\"HELLO\"') WHERE seq = 2"
    )
    report = await verify(db)
    assert ["seq 2: evidence does not match its digest (altered)"] == list(report.problems)


async def test_deleted_row_is_detected(gateway: Gateway, db: asyncpg.Connection) -> None:
    """Removing an event leaves a gap and a broken link."""
    await _fill(gateway)
    await _unlock(db)
    await db.execute("DELETE FROM ledger WHERE seq = 3")
    report = await verify(db)
    assert any("rows missing" in p for p in report.problems)
    assert any("does not link" in p for p in report.problems)


async def test_inserted_row_is_detected(gateway: Gateway, db: asyncpg.Connection) -> None:
    """A forged event slipped between two others cannot carry the right links."""
    await _fill(gateway)
    await _unlock(db)
    # Make room at seq 3 by shifting later events, then insert a copy of event 2 there.
    await db.execute("UPDATE ledger SET seq = seq + 1000 WHERE seq >= 3")
    await db.execute("UPDATE ledger SET seq = seq - 999 WHERE seq >= 1003")
    await db.execute(
        "INSERT INTO ledger SELECT 3, contact_id, channel, sender, program, 'opt_in', method,"
        " old_state, 'opted_in', server_time, carrier_time, inbound_id, evidence,"
        " evidence_sha256, hash, hash FROM ledger WHERE seq = 2"
    )
    report = await verify(db)
    assert not report.ok
    assert any(p.startswith("seq 3:") for p in report.problems)


async def test_deleted_tail_is_detected(gateway: Gateway, db: asyncpg.Connection) -> None:
    """Dropping the newest events no longer reaches the recorded head."""
    await _fill(gateway)
    await _unlock(db)
    last = await db.fetchval("SELECT max(seq) FROM ledger")
    await db.execute("DELETE FROM ledger WHERE seq = $1", last)
    report = await verify(db)
    assert any("ledger_head" in p for p in report.problems)
