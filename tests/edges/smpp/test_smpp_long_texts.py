"""Long texts through a real SMSC (node-smpp): every part acknowledged once it is committed.

The simulator delivers each part as its own deliver_sm and, with a window of 1, sends the
next one only when the previous is answered, as many SMSCs do for deliver_sm. The tests
assert on the answers the simulator got, on what reached PostgreSQL and on the submit_sm
it received; two of them run the gateway as a process and SIGKILL it between parts.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from processes import GatewayProcess
from smsc_sim import Smsc, bound_gateway, password_env
from support import PG_URL, REDIS_URL, eventually

from gateway.settings import Settings

SOURCE = "14155550200"
CONTACT = "+" + SOURCE
QUICK = {"reassembly_timeout_seconds": 1.0}
# Long enough that a part is never handed over at the timeout while a test waits for it.
PATIENT = {"reassembly_timeout_seconds": 30.0}


def _udh(ref: int, total: int, seq: int) -> dict[str, Any]:
    return {"udh_hex": bytes([5, 0, 3, ref, total, seq]).hex()}


def _udh16(ref: int, total: int, seq: int) -> dict[str, Any]:
    return {"udh_hex": bytes([6, 8, 4, ref >> 8, ref & 0xFF, total, seq]).hex()}


def _sar(ref: int, total: int, seq: int) -> dict[str, Any]:
    return {"sar": {"ref": ref, "total": total, "seq": seq}}


async def _part(sim: Smsc, text: str, *, retry: bool = False, **spec: Any) -> dict[str, Any]:
    """One part through the simulator; its final answer and how often it was delivered.

    With ``retry`` the simulator keeps a part that was not answered ESME_ROK and delivers it
    again, as a store-and-forward SMSC does.
    """
    body = {"source": SOURCE, "dest": "12345", "text": text, "retry": retry, **spec}
    answer: dict[str, Any] = await sim.call("POST", "/mo", body)
    return answer


@asynccontextmanager
async def _db(schema: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(PG_URL, server_settings={"search_path": schema})
    try:
        yield conn
    finally:
        await conn.close()


async def _events(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT e.intent, e.needs_review, e.body, e.evidence FROM inbound_events e"
        " JOIN contacts c ON c.id = e.contact_id WHERE c.address = $1 ORDER BY e.id",
        CONTACT,
    )
    return [{**dict(r), "evidence": json.loads(r["evidence"])} for r in rows]


async def _wait_events(conn: asyncpg.Connection, count: int, within: float = 20.0) -> list[Any]:
    async def enough() -> list[Any] | None:
        events = await _events(conn)
        return events if len(events) >= count else None

    return await eventually(
        enough, timeout=within, interval=0.05, message=f"fewer than {count} inbound events"
    )


async def _counts(conn: asyncpg.Connection) -> tuple[int, int, int]:
    """(inbound events, ledger events, outbox rows)."""
    return (
        await conn.fetchval("SELECT count(*) FROM inbound_events"),
        await conn.fetchval("SELECT count(*) FROM ledger"),
        await conn.fetchval("SELECT count(*) FROM outbox"),
    )


@pytest.mark.parametrize(
    "parts",
    [["STOP sending me ", "the flu reminders"], ["STOP please, ", "no more ", "reminders"]],
    ids=["2-parts", "3-parts"],
)
async def test_window_of_one_gets_each_part_answered_at_once(
    settings: Settings, smsc: Smsc, parts: list[str]
) -> None:
    """An SMSC that sends the next part only once the last is answered (window 1) gets each
    part answered ESME_ROK on its first delivery, and the text is recorded once, whole, with
    its opt-out and one confirmation."""
    async with bound_gateway(settings, smsc, top=PATIENT):
        await smsc.mode(window=1)
        total = len(parts)
        sends = [_part(smsc, text, retry=True, **_udh(77, total, n))
                 for n, text in enumerate(parts, 1)]  # fmt: skip
        answers = await asyncio.wait_for(asyncio.gather(*sends), 10)
        assert [{"status": 0, "attempts": 1}] * total == answers
        async with _db(settings.database.schema) as conn:
            events = await _events(conn)
            assert [("opt_out_all", "".join(parts))] == [(e["intent"], e["body"]) for e in events]
            assert (str(total), "") == (events[0]["evidence"]["parts"],
                                        events[0]["evidence"]["parts_missing"])  # fmt: skip
            assert (1, 2, 1) == await _counts(conn)
        await smsc.wait_for(lambda s: [m["dest"] for m in s["submits"]] == [SOURCE])


@pytest.mark.parametrize("reference", [_udh, _udh16, _sar], ids=["udh8", "udh16", "sar"])
async def test_parts_in_reverse_order_are_each_answered_at_once(
    settings: Settings, smsc: Smsc, reference: Any
) -> None:
    """Parts 3, 2, 1, each sent only after the previous was answered, are each answered
    ESME_ROK at once, and the text is read in part order."""
    async with bound_gateway(settings, smsc, top=PATIENT):
        await smsc.mode(window=1)
        for n, text in ((3, "ASE"), (2, " PLE"), (1, "STOP")):
            answer = await asyncio.wait_for(_part(smsc, text, **reference(200, 3, n)), 10)
            assert {"status": 0, "attempts": 1} == answer
        async with _db(settings.database.schema) as conn:
            events = await _events(conn)
            assert [("opt_out_all", "STOP PLEASE")] == [(e["intent"], e["body"]) for e in events]


async def test_missing_last_part_is_taken_at_the_timeout(settings: Settings, smsc: Smsc) -> None:
    """Two parts of three, the last never sent: both are answered ESME_ROK at once, and at
    the reassembly timeout the text is recorded with the parts it has; it begins with STOP,
    so it is an opt-out, confirmed once, and the evidence names the missing part."""
    async with bound_gateway(settings, smsc, top=QUICK):
        await smsc.mode(window=1)
        for n, text in ((1, "STOP texting "), (2, "me about the ")):
            assert {"status": 0, "attempts": 1} == await asyncio.wait_for(
                _part(smsc, text, **_udh(5, 3, n)), 10
            )
        async with _db(settings.database.schema) as conn:
            (event,) = await _wait_events(conn, 1)
            assert ("opt_out_all", "STOP texting me about the ") == (event["intent"], event["body"])
            assert ("3", "3") == (event["evidence"]["parts"], event["evidence"]["parts_missing"])
            states = await conn.fetch("SELECT DISTINCT state FROM consent")
            assert ["opted_out"] == [r["state"] for r in states]
        state = await smsc.wait_for(lambda s: len(s["submits"]) == 1)
        assert "no more msgs" in state["submits"][0]["text"]


async def test_text_missing_its_first_part_is_never_an_opt_in(
    settings: Settings, smsc: Smsc
) -> None:
    """Only the last part, "YES", of a two-part text arrives: at the timeout it is recorded
    for review as unknown, never as the confirmation its words alone would be."""
    async with bound_gateway(settings, smsc, top=QUICK):
        assert {"status": 0, "attempts": 1} == await _part(smsc, "YES", **_udh(6, 2, 2))
        async with _db(settings.database.schema) as conn:
            (event,) = await _wait_events(conn, 1)
            assert ("unknown", True, "YES") == (
                event["intent"], event["needs_review"], event["body"]
            )  # fmt: skip
            assert "1" == event["evidence"]["parts_missing"]
            assert (1, 0) == (await conn.fetchval("SELECT count(*) FROM inbound_events"),
                              await conn.fetchval("SELECT count(*) FROM consent"))  # fmt: skip


async def test_part_arriving_after_the_timeout_is_not_lost(settings: Settings, smsc: Smsc) -> None:
    """The first part is recorded alone at the timeout (it means nothing); when the second
    part comes later it is answered once the whole text, which says STOP, is committed."""
    async with bound_gateway(settings, smsc, top=QUICK):
        first, second = "Thanks for the reminder about the clinic, ", "but STOP sending these"
        assert 0 == (await _part(smsc, first, **_udh(8, 2, 1)))["status"]
        async with _db(settings.database.schema) as conn:
            await _wait_events(conn, 1)
            assert 0 == (await _part(smsc, second, **_udh(8, 2, 2)))["status"]
            events = await _events(conn)
            assert [("unknown", first), ("opt_out_all", first + second)] == [
                (e["intent"], e["body"]) for e in events
            ]
            assert ["2", ""] == [e["evidence"]["parts_missing"] for e in events]
            assert (2, 2, 1) == await _counts(conn)


async def test_redelivered_parts_are_recorded_once(settings: Settings, smsc: Smsc) -> None:
    """Each part delivered again after the text was recorded (its answer lost), and ten
    copies of the last part at once, are all answered ESME_ROK: one inbound event, one
    ledger event per program, one reply."""
    async with bound_gateway(settings, smsc, top=PATIENT):
        assert 0 == (await _part(smsc, "STOP ", **_udh(9, 2, 1)))["status"]
        copies = [_part(smsc, "now", **_udh(9, 2, 2)) for _ in range(10)]
        assert [0] * 10 == [a["status"] for a in await asyncio.gather(*copies)]
        for n, text in ((1, "STOP "), (2, "now")):
            assert 0 == (await _part(smsc, text, **_udh(9, 2, n)))["status"]
        async with _db(settings.database.schema) as conn:
            events = await _events(conn)
            assert [("opt_out_all", "STOP now")] == [(e["intent"], e["body"]) for e in events]
            assert (1, 2, 1) == await _counts(conn)


async def test_parts_on_two_instances_make_one_text(settings: Settings, smsc: Smsc) -> None:
    """Two gateways on one database, each bound with a window of 1, so part 1 goes to one
    and part 2 to the other at the same time: the text is recorded once, whole."""
    async with (
        bound_gateway(settings, smsc, top=PATIENT),
        bound_gateway(settings, smsc, top=PATIENT),
    ):
        await smsc.wait_bound(receivers=2)
        await smsc.mode(window=1)
        sends = [_part(smsc, "STOP ", retry=True, **_udh(10, 2, 1)),
                 _part(smsc, "it", retry=True, **_udh(10, 2, 2))]  # fmt: skip
        answers = await asyncio.wait_for(asyncio.gather(*sends), 10)
        assert [{"status": 0, "attempts": 1}] * 2 == answers
        async with _db(settings.database.schema) as conn:
            events = await _events(conn)
            assert [("opt_out_all", "STOP it")] == [(e["intent"], e["body"]) for e in events]
            assert (1, 2, 1) == await _counts(conn)


async def test_hand_off_repeated_after_a_lost_answer_is_recorded_once(
    settings: Settings, smsc: Smsc
) -> None:
    """A process that died after the text's commit but before the store heard of it (made
    here by clearing that record and backdating the claim) leaves the set claimed: the
    sweep hands it over again after the timeout and it is recorded once."""
    async with bound_gateway(settings, smsc, top=QUICK):
        for n, text in ((1, "STOP "), (2, "all")):
            assert 0 == (await _part(smsc, text, **_udh(11, 2, n)))["status"]
        async with _db(settings.database.schema) as conn:
            await conn.execute(
                "UPDATE sms_part_sets SET handed_off = NULL, claimed_at = now() - interval '1 hour'"
            )

            async def taken() -> bool:
                return not await conn.fetchval("SELECT handed_off IS NULL FROM sms_part_sets")

            await eventually(
                taken, timeout=20, interval=0.05, message="the sweep never took the set again"
            )
            assert (1, 2, 1) == await _counts(conn)


@pytest.mark.parametrize(("spec", "status"), [
    ({"text": "STOP", "dest": "99999"}, 0x0B),    # not our short code: ESME_RINVDSTADR
    ({"hex": "0102", "coding": 4}, 0x65),          # binary: ESME_RX_P_APPN
    ({"hex": "005300", "coding": 8}, 0x65),        # UCS-2 with an odd octet count
])  # fmt: skip
async def test_part_refused_for_good_is_not_kept(
    settings: Settings, smsc: Smsc, spec: dict[str, Any], status: int
) -> None:
    """A part for a destination we do not serve, or one that cannot be text, is refused at
    once with a permanent status and nothing is stored."""
    async with bound_gateway(settings, smsc, top=PATIENT):
        rest = {k: v for k, v in spec.items() if k != "text"}
        answer = await _part(smsc, spec.get("text", ""), **_udh(15, 2, 1), **rest)
        assert status == answer["status"]
        async with _db(settings.database.schema) as conn:
            assert 0 == await conn.fetchval("SELECT count(*) FROM sms_part_sets")


async def test_sweep_survives_a_set_it_cannot_read(
    settings: Settings, smsc: Smsc, caplog: pytest.LogCaptureFixture
) -> None:
    """A stored part no text can be made of (UCS-2 with an odd octet count, which the edge
    refuses, written straight into the table as a damaged row would be) is logged without
    the number and left; the sweep goes on and takes the good set next to it."""
    async with bound_gateway(settings, smsc, top=QUICK), _db(settings.database.schema) as conn:
        await conn.execute(
            "SELECT sms_part_add($1, $2, $3, $4, $5, $6, $7, $8)",
            "sim", "+14155550299", "12345", 1, 2, 1, 8, b"\x00S\x00",
        )  # fmt: skip
        assert 0 == (await _part(smsc, "STOP ", **_udh(16, 2, 1)))["status"]
        (event,) = await _wait_events(conn, 1)
        assert "opt_out_all" == event["intent"]
    failed = [r for r in caplog.records if r.getMessage() == "smpp part set hand-off failed"]
    assert failed
    assert not [r for r in caplog.records if "4155550299" in str(r.__dict__)]


async def test_erasure_forgets_parts_still_waiting(settings: Settings, smsc: Smsc) -> None:
    """A person erased (GDPR art. 17) while the first part of their text waits for the
    second: the part's octets are deleted with the rest of what they said."""
    async with bound_gateway(settings, smsc, top=PATIENT) as gw:
        assert 0 == (await _part(smsc, "STOP ", **_udh(14, 2, 1)))["status"]
        await gw.api.privacy.erase("sms", CONTACT, "test")
        async with _db(settings.database.schema) as conn:
            assert (0, 0) == (await conn.fetchval("SELECT count(*) FROM sms_part_sets"),
                              await conn.fetchval("SELECT count(*) FROM sms_parts"))  # fmt: skip


# ---- the gateway as a process, SIGKILLed between parts ---------------------------------------


def _gateway_process(tmp_path: Path, schema: str, prefix: str, smsc: Smsc,
                     timeout: float) -> GatewayProcess:  # fmt: skip
    env = {"GATEWAY_DATABASE_URL": PG_URL, "GATEWAY_REDIS_URL": REDIS_URL, **password_env()}
    proc = GatewayProcess(tmp_path, schema=schema, redis_prefix=prefix, env=env)
    with proc.config.open("a", encoding="utf-8") as config:
        config.write(
            "[outbox]\npoll_interval_seconds = 0.1\n"
            f"[smpp]\nshutdown_timeout_seconds = 2.0\nreassembly_timeout_seconds = {timeout}\n"
            '[smpp.senders]\n"12345" = ["sim"]\n'
            f'[smpp.smsc.sim]\nhost = "127.0.0.1"\nport = {smsc.smpp_port}\n'
            'system_id = "gateway"\nreconnect_min_seconds = 0.05\nreconnect_max_seconds = 0.5\n'
            "registered_delivery = false\n"
        )
    return proc


@pytest.mark.slow
async def test_sigkill_between_parts_then_the_rest_arrives(
    tmp_path: Path, schema: str, redis_prefix: str, smsc: Smsc
) -> None:
    """Part 1 answered, the gateway SIGKILLed, part 2 sent while it is down: after the
    restart part 2 completes the set, and the text is recorded once, whole, and confirmed."""
    gw = _gateway_process(tmp_path, schema, redis_prefix, smsc, timeout=30.0)
    gw.start()
    try:
        await smsc.wait_bound()
        await smsc.mode(window=1)
        first = await asyncio.wait_for(_part(smsc, "STOP ", **_udh(12, 2, 1)), 10)
        assert {"status": 0, "attempts": 1} == first
        assert -signal.SIGKILL == gw.stop(signal.SIGKILL)
        second = asyncio.create_task(_part(smsc, "everything", retry=True, **_udh(12, 2, 2)))
        await smsc.wait_for(lambda s: s["queued"] == 1)
        gw.start()
        assert 0 == (await asyncio.wait_for(second, 20))["status"]
        await smsc.wait_for(lambda s: len(s["submits"]) == 1)
    finally:
        gw.stop()
    async with _db(schema) as conn:
        events = await _events(conn)
        assert [("opt_out_all", "STOP everything")] == [(e["intent"], e["body"]) for e in events]
        assert (1, 2, 1) == await _counts(conn)


@pytest.mark.slow
async def test_sigkill_between_parts_and_the_rest_never_comes(
    tmp_path: Path, schema: str, redis_prefix: str, smsc: Smsc
) -> None:
    """Part 1 ("STOP") answered, the gateway SIGKILLed before the timeout, part 2 never
    sent: the restarted gateway records the text at the timeout with the part it has, an
    opt-out, once, confirmed once."""
    gw = _gateway_process(tmp_path, schema, redis_prefix, smsc, timeout=3.0)
    gw.start()
    try:
        await smsc.wait_bound()
        assert 0 == (await _part(smsc, "STOP ", **_udh(13, 2, 1)))["status"]
        assert -signal.SIGKILL == gw.stop(signal.SIGKILL)
        async with _db(schema) as conn:
            assert [] == await _events(conn)  # killed before the timeout came
            gw.start()
            (event,) = await _wait_events(conn, 1, within=30)
        await smsc.wait_for(lambda s: len(s["submits"]) == 1)
    finally:
        gw.stop()
    assert ("opt_out_all", "STOP ", "2") == (
        event["intent"], event["body"], event["evidence"]["parts_missing"]
    )  # fmt: skip
    async with _db(schema) as conn:
        assert (1, 2, 1) == await _counts(conn)
