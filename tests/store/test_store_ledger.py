"""The ledger's hash chain: `audit verify` passes on an honest ledger and catches every tamper."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
import pytest
from support import PG_URL, count_rows, eventually, sms

from gateway.app import Gateway
from gateway.errors import TemporaryFailure
from gateway.messages import OutcomeStatus
from gateway.settings import Settings
from gateway.store import chain
from gateway.store import statements as sql
from gateway.store.chain import link
from gateway.store.lease import retry_reason
from gateway.store.ledger import evidence_digest, evidence_json, verify
from gateway.store.plan import LedgerRow


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


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM contacts",
        "TRUNCATE contacts CASCADE",
        "UPDATE contacts SET id = id + 1000",
        "DELETE FROM inbound_events",
        "TRUNCATE inbound_events CASCADE",
        "UPDATE inbound_events SET id = id + 1000",
    ],
)
async def test_the_rows_the_ledger_points_at_are_never_removed_or_renumbered(
    gateway: Gateway, db: asyncpg.Connection, statement: str
) -> None:
    """The ledger, consent and outbox rows name their contact and inbound event without a
    foreign key (migration 009), so the database refuses whatever alone could orphan them."""
    await _fill(gateway)
    with pytest.raises(asyncpg.RaiseError, match="never deleted or renumbered"):
        await db.execute(statement)
    assert 5 == await count_rows(db, "ledger")
    report = await verify(db)
    assert (True, ()) == (report.ok, report.problems)


async def test_a_ledger_row_whose_contact_or_inbound_event_went_missing_is_reported(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """Past the guards (triggers switched off, as an attacker with table rights would),
    a removed contact or inbound event is named by the audit, row by row."""
    await _fill(gateway)
    await db.execute(
        "ALTER TABLE contacts DISABLE TRIGGER USER; ALTER TABLE inbound_events DISABLE TRIGGER USER"
    )
    first = await db.fetchrow("SELECT contact_id, inbound_id FROM ledger WHERE seq = 1")
    assert first is not None
    await db.execute("DELETE FROM inbound_events WHERE id = $1", first["inbound_id"])
    await db.execute(
        "DELETE FROM contacts WHERE id = (SELECT contact_id FROM ledger WHERE seq = 2)"
        " AND id <> $1",
        first["contact_id"],
    )
    report = await verify(db)
    seqs = await db.fetch(
        "SELECT seq FROM ledger WHERE contact_id = (SELECT contact_id FROM ledger WHERE seq = 2)"
        " ORDER BY seq"
    )
    assert [
        "seq 1: its inbound event is missing (deleted)",
        *(f"seq {r['seq']}: its contact is missing (deleted)" for r in seqs),
    ] == sorted(report.problems, key=lambda p: int(p.split()[1].rstrip(":")))
    assert len(seqs) >= 2, report.problems  # START, then a STOP of both programs


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


async def _slow_commit_for(db: asyncpg.Connection, recipient: str, *, then: str) -> None:
    """Make COMMIT of a batch with a reply to ``recipient`` take 0.5 s, then run ``then``."""
    await db.execute(
        "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$"
        f" BEGIN IF NEW.recipient = '{recipient}' THEN PERFORM pg_sleep(0.5); {then} END IF;"
        " RETURN NULL; END $$;"
        "CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON outbox"
        " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit()"
    )


async def _in_slow_commit(db: asyncpg.Connection) -> None:
    """Wait until a batch is inside the slow-commit trigger (its backend is in pg_sleep)."""
    await eventually(
        lambda: db.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE wait_event = 'PgSleep' AND datname = current_database()"
        ),
        timeout=5,
        interval=0.005,
        message="no batch reached the slow COMMIT",
    )


def _retries(gateway: Gateway) -> float:
    value = gateway.metrics.registry.get_sample_value(
        "gateway_commit_retries_total", {"reason": "head_moved"}
    )
    return value or 0.0


async def test_a_batch_chained_onto_one_still_committing_waits_for_it(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """The second writer task chains onto the first's batch while it commits (slowly, here),
    and its head update waits for that commit inside Postgres: nothing is run twice."""
    slow = "+14155559998"
    await _slow_commit_for(db, slow, then="")
    await gateway.pipeline.handle(sms("STOP", contact="+14155550001"))  # the head is known
    first = asyncio.ensure_future(gateway.pipeline.handle(sms("STOP", contact=slow)))
    await _in_slow_commit(db)  # its batch now sits in COMMIT, holding ledger_head
    rest = await asyncio.gather(
        *(gateway.pipeline.handle(sms("STOP", contact=f"+1415558{i:04d}")) for i in range(20))
    )

    assert OutcomeStatus.COMMITTED == (await first).status
    assert all(o.status is OutcomeStatus.COMMITTED for o in rest)
    assert 0 == _retries(gateway)
    assert min(seq for o in rest for seq in o.ledger_seqs) > max((await first).ledger_seqs)
    report = await verify(db)
    assert (True, ()) == (report.ok, report.problems)
    assert 2 * 22 == report.events


async def test_two_instances_appending_at_once_keep_one_gap_free_chain(
    settings: Settings, gateway: Gateway, db: asyncpg.Connection
) -> None:
    """Each instance chains onto the head it last wrote; when the other moved it meanwhile,
    the batch is chained again from the locked head: never a fork, never a gap."""

    async def waves(gw: Gateway, offset: int) -> list[int]:
        seqs: list[int] = []
        for wave in range(15):
            outcomes = await asyncio.gather(
                *(
                    gw.pipeline.handle(sms("STOP", contact=f"+1415556{offset + wave * 10 + i:04d}"))
                    for i in range(10)
                )
            )
            assert all(o.status is OutcomeStatus.COMMITTED for o in outcomes)
            seqs.extend(seq for o in outcomes for seq in o.ledger_seqs)
        return seqs

    async with Gateway(settings) as other:
        mine, theirs = await asyncio.gather(waves(gateway, 0), waves(other, 5000))
        retried = _retries(gateway) + _retries(other)

    assert retried > 0  # the instances did cross each other
    report = await verify(db)
    assert (True, ()) == (report.ok, report.problems)
    assert 600 == report.events == await db.fetchval("SELECT seq FROM ledger_head")
    assert list(range(1, 601)) == sorted(mine + theirs)


async def test_an_instance_that_found_the_head_moved_reads_it_under_its_lock(
    settings: Settings, gateway: Gateway, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A retry redoes a whole batch, so once another instance has moved the head under one,
    an instance reads the head under its lock: waves that cross each other all along cost
    each instance the batches in flight at the first crossing, not one retry per crossing."""
    monkeypatch.setattr(chain, "CONTENDED_SECONDS", 600.0)  # the whole test is contended

    async def waves(gw: Gateway, offset: int) -> None:
        for wave in range(30):
            outcomes = await asyncio.gather(
                *(
                    gw.pipeline.handle(sms("STOP", contact=f"+1415554{offset + wave * 10 + i:04d}"))
                    for i in range(10)
                )
            )
            assert all(o.status is OutcomeStatus.COMMITTED for o in outcomes)

    async with Gateway(settings) as other:
        await asyncio.gather(waves(gateway, 0), waves(other, 5000))
        retried = (_retries(gateway), _retries(other))

    # Each writer task's batch in flight at the first crossing (two tasks per instance).
    assert max(retried) <= 2, retried
    report = await verify(db)
    assert (True, ()) == (report.ok, report.problems)
    assert 1200 == report.events == await db.fetchval("SELECT seq FROM ledger_head")


def test_the_chain_trusts_its_memory_again_once_nobody_has_moved_the_head_for_a_while() -> None:
    now = [100.0]
    tracked = chain.Chain(clock=lambda: now[0])
    assert not tracked.contended()
    tracked.moved()
    now[0] += chain.CONTENDED_SECONDS - 0.01
    assert tracked.contended()
    tracked.moved()  # moved again: the window starts over
    now[0] += chain.CONTENDED_SECONDS - 0.01
    assert tracked.contended()
    now[0] += 0.02
    assert not tracked.contended()


class _HeadRow:
    """What ``sql.lock_head`` reads, from a connection that only answers it."""

    def __init__(self) -> None:
        self.head: tuple[int, bytes] = (0, b"\0" * 32)

    async def fetchrow(self, query: str) -> dict[str, object]:
        assert "FOR UPDATE" in query
        return {"seq": self.head[0], "hash": self.head[1]}


async def test_a_head_another_instance_moved_keeps_the_chain_contended() -> None:
    """Read under its lock, a head that is not the one this process wrote means another
    instance is appending: the window starts over, with no redone batch to say so."""
    now = [0.0]
    tracked = chain.Chain(clock=lambda: now[0])
    conn = _HeadRow()
    row = LedgerRow(
        1, "sms", "12345", "reminders", "opt_out", "sms_keyword", "none", "opted_out",
        datetime.now(UTC), None, None, "{}", evidence_digest("{}"),
    )  # fmt: skip

    async def commit_one() -> tuple[int, bytes]:
        async with tracked.append(conn, [row]) as ours:  # type: ignore[arg-type]
            assert ours.heads is not None
            conn.head = ours.heads[1]
            return ours.heads[0]

    tracked.moved()
    window = chain.CONTENDED_SECONDS
    now[0] = window - 0.2
    await commit_one()  # nothing known: read under the lock
    ours = conn.head
    now[0] = window - 0.15
    assert ours == await commit_one()  # read again: still the head this process wrote
    conn.head = theirs = (conn.head[0] + 5, b"\1" * 32)  # then another instance appends
    now[0] = window - 0.1
    assert theirs == await commit_one()  # read under the lock and chained onto
    now[0] = 2 * window - 0.15
    assert tracked.contended()  # that read started the window again
    now[0] = 2 * window - 0.1
    assert not tracked.contended()  # nobody else moved it since: memory is trusted again


async def test_a_batch_chained_onto_one_that_failed_is_chained_again(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """One writer's batch fails at COMMIT after the other writer chained onto its head: the
    second batch must not commit a link to rows that never existed."""
    poison = "+14155559999"
    await _slow_commit_for(db, poison, then="RAISE EXCEPTION 'refused by test';")
    await gateway.pipeline.handle(sms("STOP", contact="+14155550001"))  # the head is known
    doomed = asyncio.ensure_future(gateway.pipeline.handle(sms("STOP", contact=poison)))
    await _in_slow_commit(db)  # its batch now holds ledger_head, failing slowly at COMMIT
    good = await asyncio.gather(
        *(gateway.pipeline.handle(sms("STOP", contact=f"+1415557{i:04d}")) for i in range(20))
    )

    with pytest.raises(TemporaryFailure):
        await doomed
    assert all(o.status is OutcomeStatus.COMMITTED for o in good)
    assert _retries(gateway) > 0
    report = await verify(db)
    assert (True, ()) == (report.ok, report.problems)
    assert 2 * 21 == report.events == await count_rows(db, "ledger")


async def _waiting_on_a_lock(db: asyncpg.Connection, pid: int) -> None:
    async def waiting() -> bool:
        sql = "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1"
        return bool(await db.fetchval(sql, pid) == "Lock")

    await eventually(
        waiting, timeout=5, interval=0.005, message="the chained batch never waited for the head"
    )


async def test_a_writer_holding_the_head_never_waits_for_one_waiting_for_it(
    settings: Settings, gateway: Gateway, db: asyncpg.Connection
) -> None:
    """Writer A chained its batch onto a head that writer B (another instance, or a retry
    after a failure) has locked to read: A must not hold its ledger rows while it waits for
    the head, or B, inserting the same seqs, waits for A and the two deadlock."""
    await gateway.pipeline.handle(sms("STOP"))
    contact_id = await db.fetchval("SELECT min(contact_id) FROM ledger")
    before = await count_rows(db, "ledger")
    evidence = evidence_json({"test": "deadlock"})
    row = LedgerRow(
        contact_id, "sms", "12345", "reminders", "opt_out", "sms_keyword", "opted_out",
        "opted_out", datetime.now(UTC), None, None, evidence, evidence_digest(evidence),
    )  # fmt: skip

    def changes(head: tuple[int, bytes]) -> sql.Changes:
        records, _, new_head = link(head, [row] * 3)
        return sql.Changes(ledger=records, head=(head, new_head), consent=[], cancel=[], outbox=[])

    path = {"search_path": settings.database.schema}
    a = await asyncpg.connect(PG_URL, server_settings=path)
    b = await asyncpg.connect(PG_URL, server_settings=path)
    try:
        await b.execute("BEGIN")
        head = await sql.lock_head(b)  # B holds the head, as after a failed batch
        await a.execute("BEGIN")
        chained = asyncio.ensure_future(sql.write_changes(a, changes(head)))
        await _waiting_on_a_lock(db, a.get_server_pid())
        await asyncio.wait_for(sql.write_changes(b, changes(head)), 5)  # no deadlock wait
        await b.execute("COMMIT")
        with pytest.raises((sql.HeadMoved, asyncpg.UniqueViolationError)) as lost:
            await asyncio.wait_for(chained, 5)
        assert "head_moved" == retry_reason(lost.value)  # A chains again; nothing is lost
        await a.execute("ROLLBACK")
    finally:
        await a.close()
        await b.close()
    report = await verify(db)
    assert (True, ()) == (report.ok, report.problems)
    assert before + 3 == report.events  # B's three; A's were never written
