"""The pipeline against the real Postgres and Redis: ack after commit, exactly once, bad input."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest
from faults import TcpProxy
from support import PG_URL, count_rows, make_settings, sms

from gateway.app import Gateway
from gateway.errors import BadInput, InvalidAddress, TemporaryFailure, UnknownSender
from gateway.messages import Outcome, OutcomeStatus
from gateway.settings import Settings
from keywords.model import Channel

CONTACT = "+14155550123"


async def test_stop_records_ledger_event_with_evidence_and_queues_one_confirmation(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """A STOP writes one ledger event per program with method, times and evidence, and one reply."""
    outcome = await gateway.pipeline.handle(sms("STOP", contact="(415) 555-0123", key="mo-1"))

    assert OutcomeStatus.COMMITTED == outcome.status
    rows = await db.fetch("SELECT * FROM ledger ORDER BY seq")
    assert ["flu", "reminders"] == sorted(r["program"] for r in rows)
    for row in rows:
        assert ("opt_out", "sms_keyword", "opted_out") == (
            row["action"],
            row["method"],
            row["new_state"],
        )
        assert row["server_time"] is not None
        evidence = json.loads(row["evidence"])
        assert ("STOP", "mo-1", "exact") == (
            evidence["text"],
            evidence["dedupe_key"],
            evidence["match"],
        )
    contact = await db.fetchrow("SELECT address FROM contacts")
    assert contact is not None
    assert CONTACT == contact["address"]
    outbox = await db.fetch("SELECT kind, status, recipient, body FROM outbox")
    assert 1 == len(outbox)
    assert ("opt_out", "queued", CONTACT) == (
        outbox[0]["kind"],
        outbox[0]["status"],
        outbox[0]["recipient"],
    )
    assert "no more" in outbox[0]["body"].lower()


async def test_redelivery_gives_no_second_event_and_no_second_reply(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """The same message id delivered twice is acknowledged twice but recorded once."""
    first = await gateway.pipeline.handle(sms("STOP", key="mo-dup"))
    second = await gateway.pipeline.handle(sms("STOP", key="mo-dup"))

    assert (OutcomeStatus.COMMITTED, OutcomeStatus.DUPLICATE) == (first.status, second.status)
    assert first.inbound_id == second.inbound_id
    assert 2 == await count_rows(db, "ledger")
    assert 1 == await count_rows(db, "outbox")


async def test_fifty_concurrent_deliveries_give_one_event_and_one_outbox_row(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """50 concurrent copies of one START: one ledger event, one confirmation."""
    outcomes = await asyncio.gather(
        *(gateway.pipeline.handle(sms("START", key="mo-50")) for _ in range(50))
    )

    statuses = [o.status for o in outcomes]
    assert 1 == statuses.count(OutcomeStatus.COMMITTED)
    assert 49 == statuses.count(OutcomeStatus.DUPLICATE)
    assert 1 == await count_rows(db, "ledger")
    assert 1 == await count_rows(db, "outbox")


async def test_concurrent_deliveries_to_two_instances_give_one_event(
    settings: Settings, gateway: Gateway, db: asyncpg.Connection
) -> None:
    """Two instances racing on the same message id and contact still record it once."""
    async with Gateway(settings) as other:
        outcomes = await asyncio.gather(
            *(
                (gateway if i % 2 else other).pipeline.handle(sms("START", key="mo-two"))
                for i in range(50)
            )
        )
    assert 1 == [o.status for o in outcomes].count(OutcomeStatus.COMMITTED)
    assert 1 == await count_rows(db, "ledger")
    assert 1 == await count_rows(db, "outbox")


async def test_failed_commit_leaves_nothing_behind_and_reports_temporary_failure(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """A commit that Postgres refuses writes nothing; the peer is told to retry, and can."""
    # A deferred constraint trigger fails at COMMIT itself: a real commit failure.
    await db.execute(
        "CREATE FUNCTION refuse_commit() RETURNS trigger LANGUAGE plpgsql AS $$"
        " BEGIN RAISE EXCEPTION 'commit refused by test'; END $$;"
        "CREATE CONSTRAINT TRIGGER refuse_commit AFTER INSERT ON outbox"
        " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_commit()"
    )
    with pytest.raises(TemporaryFailure):
        await gateway.pipeline.handle(sms("STOP", key="mo-fail"))
    for table in ("contacts", "inbound_events", "ledger", "consent", "outbox"):
        assert 0 == await count_rows(db, table), table
    head = await db.fetchrow("SELECT seq FROM ledger_head")
    assert head is not None
    assert 0 == head["seq"]

    await db.execute("DROP TRIGGER refuse_commit ON outbox")
    retried = await gateway.pipeline.handle(sms("STOP", key="mo-fail"))
    assert OutcomeStatus.COMMITTED == retried.status
    assert 2 == await count_rows(db, "ledger")


async def test_database_unreachable_reports_temporary_failure_then_records_once(
    schema: str, redis_prefix: str
) -> None:
    """Postgres cut off mid-flow: temporary failures, then each text recorded once."""
    proxy = TcpProxy("127.0.0.1", 5432)
    await proxy.start()
    dsn = f"postgresql://postgres@127.0.0.1:{proxy.port}/test"
    settings = make_settings(schema, redis_prefix, dsn=dsn)
    try:
        async with Gateway(settings, serve_http=False) as gw:
            await gw.pipeline.handle(sms("START", key="before"))
            proxy.cut()
            results = await asyncio.gather(
                *(gw.pipeline.handle(sms("STOP", key=f"during-{i}")) for i in range(20)),
                return_exceptions=True,
            )
            assert all(isinstance(r, TemporaryFailure) for r in results), results
            proxy.restore()
            for i in range(20):
                outcome = await _retry(gw, f"during-{i}")
                assert outcome.status in (OutcomeStatus.COMMITTED, OutcomeStatus.DUPLICATE)
    finally:
        await proxy.close()
    conn = await asyncpg.connect(PG_URL, server_settings={"search_path": schema})
    try:
        assert 21 == await count_rows(conn, "inbound_events")
        # START opted in one program; the first STOP opted out both; the rest changed nothing.
        assert 3 == await count_rows(conn, "ledger")
    finally:
        await conn.close()


async def _retry(gw: Gateway, key: str, attempts: int = 100) -> Outcome:
    """Redeliver as an SMSC would: retry temporary failures with a short pause."""
    for _ in range(attempts):
        try:
            return await gw.pipeline.handle(sms("STOP", key=key))
        except TemporaryFailure:
            await asyncio.sleep(0.1)
    raise AssertionError("never committed")


async def test_opt_out_cancels_the_unsent_opt_in_confirmation(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """START then STOP before the worker ran: the opt-in reply is never sent."""
    await gateway.pipeline.handle(sms("START"))
    await gateway.pipeline.handle(sms("STOP"))

    rows = await db.fetch("SELECT kind, status FROM outbox ORDER BY id")
    assert [("opt_in", "cancelled"), ("opt_out", "queued")] == [
        (r["kind"], r["status"]) for r in rows
    ]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"sender": "99999"}, UnknownSender),
        ({"contact": "not a number"}, InvalidAddress),
        ({"contact": "+1 555"}, InvalidAddress),
        ({"key": "k" * 201}, BadInput),
    ],
)
async def test_bad_input_is_refused_and_writes_nothing(
    gateway: Gateway, db: asyncpg.Connection, kwargs: dict[str, str], error: type[Exception]
) -> None:
    """Unknown sender, invalid number, oversized id: a permanent refusal, no rows."""
    params = {"text": "STOP", **kwargs}
    with pytest.raises(error):
        await gateway.pipeline.handle(sms(**params))
    for table in ("contacts", "inbound_events", "ledger", "outbox"):
        assert 0 == await count_rows(db, table), table


async def test_gate_answers_follow_the_consent_state(gateway: Gateway) -> None:
    """Nobody is allowed before START, everybody after, nobody after STOP."""
    gate = gateway.gate
    before = await gate.check("12345", "reminders", Channel.SMS, CONTACT)
    await gateway.pipeline.handle(sms("START"))
    during = await gate.check("12345", "reminders", Channel.SMS, CONTACT)
    other_program = await gate.check("12345", "flu", Channel.SMS, CONTACT)
    await gateway.pipeline.handle(sms("stop please"))
    after = await gate.check("12345", "reminders", Channel.SMS, CONTACT)

    assert (False, "no_consent") == (before.allowed, before.reason)
    assert (True, "opted_in") == (during.allowed, during.reason)
    assert (False, "no_consent") == (other_program.allowed, other_program.reason)
    assert (False, "opted_out") == (after.allowed, after.reason)
    assert after.since is not None


async def test_opt_out_in_the_same_batch_cancels_the_opt_in_reply(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """START and STOP committed together (one group commit): the START's reply never leaves."""
    start, stop = await asyncio.gather(
        gateway.pipeline.handle(sms("START")), gateway.pipeline.handle(sms("STOP"))
    )
    assert start.outbox_ids
    assert stop.outbox_ids
    rows = await db.fetch("SELECT kind, status FROM outbox ORDER BY id")
    assert [("opt_in", "cancelled"), ("opt_out", "queued")] == [
        (r["kind"], r["status"]) for r in rows
    ]
    state = await db.fetchval("SELECT state FROM consent WHERE program = 'reminders'")
    assert "opted_out" == state


async def test_connections_the_server_closed_while_idle_are_replaced_without_a_failure(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """Each writer task holds its connection between batches (sometimes with the next
    transaction open); the server ends them while idle (a restart, a failover,
    idle_in_transaction_session_timeout): the next batch retries on a new connection."""
    await asyncio.gather(
        *(gateway.pipeline.handle(sms("STOP", contact=f"+1415559{i:04d}")) for i in range(60))
    )
    killed = await db.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE application_name = 'consent-gateway' AND datname = current_database()"
        " AND state IN ('idle', 'idle in transaction')"
    )
    assert killed >= 1

    outcomes = await asyncio.gather(
        *(gateway.pipeline.handle(sms("STOP", contact=f"+1415558{i:04d}")) for i in range(10))
    )
    assert all(o.status is OutcomeStatus.COMMITTED for o in outcomes)


async def test_the_transaction_a_writer_leaves_open_holds_no_snapshot_and_no_lock(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """Between batches each writer sits in a BEGIN that has run nothing (``COMMIT; BEGIN``):
    it must hold back neither VACUUM (no snapshot, no xid) nor anyone's DDL (no lock)."""
    await gateway.pipeline.handle(sms("STOP"))
    rows = await db.fetch(
        "SELECT a.backend_xid, a.backend_xmin,"
        " (SELECT count(*) FROM pg_locks l WHERE l.pid = a.pid AND l.locktype <> 'virtualxid')"
        " AS locks FROM pg_stat_activity a"
        " WHERE a.application_name = 'consent-gateway' AND a.datname = current_database()"
        " AND a.state = 'idle in transaction' AND a.query = 'COMMIT; BEGIN'"
    )  # the writers' connections: others (the outbox worker's) may be mid-transaction
    assert rows  # the writer that took the batch is waiting in its next transaction
    for row in rows:
        assert (None, None, 0) == (row["backend_xid"], row["backend_xmin"], row["locks"])
