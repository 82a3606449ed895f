"""Subscribers' texts through a real SMPP peer (node-smpp): every keyword family and encoding.

Each test delivers MOs from the simulator and asserts on what reached Postgres (inbound
events, ledger, outbox) and on the submit_sm the simulator received, never on internals.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from smsc_sim import Smsc

from gateway.app import Gateway

FAMILIES = [
    ("STOP", "opt_out_all"),
    ("STOP FLU", "opt_out"),
    ("START", "opt_in"),
    ("FLU", "join"),
    ("YES", "confirm"),
    ("HELP", "help"),
]


def _udh(ref: int, total: int, seq: int) -> str:
    return bytes([5, 0, 3, ref, total, seq]).hex()


async def _intents(db: asyncpg.Connection, contact: str) -> list[tuple[str, str]]:
    rows = await db.fetch(
        "SELECT e.intent, e.body FROM inbound_events e JOIN contacts c ON c.id = e.contact_id"
        " WHERE c.address = $1 ORDER BY e.id",
        contact,
    )
    return [(r["intent"], r["body"]) for r in rows]


@pytest.mark.parametrize(("text", "intent"), FAMILIES)
@pytest.mark.parametrize("form", ["gsm", "ucs2", "concatenated"])
async def test_keyword_families_in_every_form(
    smsc: Smsc, smpp_gateway: Gateway, db: asyncpg.Connection, text: str, intent: str, form: str
) -> None:
    """Each family, as GSM-7, UCS-2 and a two-part text arriving out of order, is recorded
    with its intent, acknowledged ESME_ROK, and answered by submit_sm from the short code."""
    source = "14155550100"
    if form == "concatenated":
        half = len(text) // 2
        second = asyncio.create_task(smsc.mo(text[half:], source=source, udh_hex=_udh(42, 2, 2)))
        await smsc.wait_for(lambda s: s["queued"] == 0)  # part 2 is with the gateway first
        statuses = [await smsc.mo(text[:half], source=source, udh_hex=_udh(42, 2, 1)),
                    await second]  # fmt: skip
    else:
        statuses = [await smsc.mo(text, source=source, coding=8 if form == "ucs2" else 0)]
    assert all(s == 0 for s in statuses)
    assert [(intent, text)] == await _intents(db, "+14155550100")
    state = await smsc.wait_for(lambda s: any(m["dest"] == source for m in s["submits"]))
    reply = next(m for m in state["submits"] if m["dest"] == source)
    assert "12345" == reply["source"]
    assert 1 == reply["registered_delivery"]


@pytest.mark.parametrize(("spec", "body"), [
    ({"text": "STOP", "coding": 1}, "STOP"),                          # IA5
    ({"text": "ARRÊT", "coding": 3}, "ARRÊT"),                        # Latin-1
    ({"text": "stop 😀", "coding": 8}, "stop 😀"),                    # UCS-2 surrogate pair
    ({"text": "STOP §¿", "coding": 0}, "STOP §¿"),                    # GSM 0x5F, 0x60
    ({"text": "STOP €", "coding": 0}, "STOP €"),                      # GSM escape pair
    ({"text": "STOP", "coding": 0, "payload": True}, "STOP"),         # message_payload TLV
])  # fmt: skip
async def test_encodings_are_read_as_written(
    smsc: Smsc, smpp_gateway: Gateway, db: asyncpg.Connection, spec: dict[str, Any], body: str
) -> None:
    """IA5, Latin-1, UCS-2 with an emoji, GSM 03.38 (0x5F and an escape) and message_payload
    all decode to the subscriber's exact text, stored as evidence."""
    assert 0 == await smsc.mo(source="14155550101", **spec)
    assert [("opt_out_all", body)] == await _intents(db, "+14155550101")


async def test_sar_tlvs_and_16_bit_udh_reassemble(
    smsc: Smsc, smpp_gateway: Gateway, db: asyncpg.Connection
) -> None:
    """Parts joined by SAR TLVs and by a 16-bit UDH reference, from two people using the
    same reference at once, give each person their own text."""
    a = [smsc.mo(t, source="14155550102", sar={"ref": 7, "total": 3, "seq": n})
         for n, t in ((3, "ASE"), (1, "STOP"), (2, " PLE"))]  # fmt: skip
    udh16 = [bytes([6, 8, 4, 0, 7, 2, n]).hex() for n in (1, 2)]
    b = [smsc.mo("STA", source="14155550103", udh_hex=udh16[0]),
         smsc.mo("RT", source="14155550103", udh_hex=udh16[1])]  # fmt: skip
    assert [0] * 5 == await asyncio.gather(*a, *b)
    assert [("opt_out_all", "STOP PLEASE")] == await _intents(db, "+14155550102")
    assert [("opt_in", "START")] == await _intents(db, "+14155550103")


async def test_help_from_a_stranger_changes_nothing_but_is_answered(
    smsc: Smsc, smpp_gateway: Gateway, db: asyncpg.Connection
) -> None:
    """HELP from a number that never subscribed: one HELP reply, no ledger event, no consent."""
    assert 0 == await smsc.mo("HELP", source="14155550105")
    state = await smsc.wait_for(lambda s: len(s["submits"]) == 1)
    assert "Help at" in state["submits"][0]["text"]
    assert (0, 0) == (await db.fetchval("SELECT count(*) FROM ledger"),
                      await db.fetchval("SELECT count(*) FROM consent"))  # fmt: skip


async def test_stop_from_a_stranger_is_recorded_and_confirmed_once(
    smsc: Smsc, smpp_gateway: Gateway, db: asyncpg.Connection
) -> None:
    """STOP from a number that never subscribed opts it out of every program (a ledger event
    each) and sends exactly one confirmation that says no more messages will come."""
    assert 0 == await smsc.mo("STOP", source="14155550106")
    state = await smsc.wait_for(lambda s: len(s["submits"]) == 1)
    assert "no more msgs" in state["submits"][0]["text"]
    actions = await db.fetch("SELECT program, action FROM ledger ORDER BY program")
    assert [("flu", "opt_out"), ("reminders", "opt_out")] == [tuple(r) for r in actions]
    assert 1 == await db.fetchval("SELECT count(*) FROM outbox")


async def test_redelivered_text_gives_no_second_event_or_reply(
    smsc: Smsc, smpp_gateway: Gateway, db: asyncpg.Connection
) -> None:
    """The SMSC delivering the same STOP again (its resp was lost) is acknowledged ESME_ROK
    and records nothing more: one inbound event, one ledger event per program, one reply."""
    assert 0 == await smsc.mo("STOP", source="14155550107")
    await smsc.wait_for(lambda s: len(s["submits"]) == 1)
    assert [0, 0] == [await smsc.mo("STOP", source="14155550107") for _ in range(2)]
    assert (1, 2, 1) == (
        await db.fetchval("SELECT count(*) FROM inbound_events"),
        await db.fetchval("SELECT count(*) FROM ledger"),
        await db.fetchval("SELECT count(*) FROM outbox"),
    )


async def test_same_words_after_different_ones_are_new(
    smsc: Smsc, smpp_gateway: Gateway, db: asyncpg.Connection
) -> None:
    """STOP, START, STOP within the dedupe window are three texts, not a redelivery."""
    for text in ("STOP", "START", "STOP"):
        assert 0 == await smsc.mo(text, source="14155550108")
    intents = [i for i, _ in await _intents(db, "+14155550108")]
    assert ["opt_out_all", "opt_in", "opt_out_all"] == intents
    state = await db.fetchval("SELECT DISTINCT state FROM consent")
    assert "opted_out" == state


@pytest.mark.parametrize(("spec", "status"), [
    ({"text": "STOP", "dest": "99999"}, 0x0B),            # not our short code: RINVDSTADR
    ({"hex": "0102", "coding": 4}, 0x65),                  # binary: RX_P_APPN
    ({"text": "STOP", "source": "12"}, 0x0A),              # not a phone number: RINVSRCADR
])  # fmt: skip
async def test_refusals_write_nothing(
    smsc: Smsc, smpp_gateway: Gateway, db: asyncpg.Connection, spec: dict[str, Any], status: int
) -> None:
    """Unknown destination, binary content and a bad source get a permanent error status
    and write nothing (docs/DESIGN.md, invariant 7)."""
    assert status == await smsc.mo(**{"source": "14155550109", **spec})
    assert 0 == await db.fetchval("SELECT count(*) FROM inbound_events")


async def test_delivery_receipt_is_matched_not_taken_for_a_text(
    smsc: Smsc, smpp_gateway: Gateway, db: asyncpg.Connection
) -> None:
    """The SMSC's receipt for our confirmation (esm_class 0x04) is recorded against the
    outbox row it reports on, and is never an inbound text."""
    assert 0 == await smsc.mo("STOP", source="14155550110")
    await smsc.wait_for(lambda s: s["receipts_ok"] == 1)
    row = await db.fetchrow("SELECT id, delivery_state, provider_ref FROM outbox")
    assert row is not None
    assert "DELIVRD" == row["delivery_state"]
    receipt = await db.fetchrow("SELECT outbox_id, smsc, message_id FROM delivery_receipts")
    assert receipt is not None
    assert row["id"] == receipt["outbox_id"]
    assert f"sim/{receipt['message_id']}" == row["provider_ref"]
    assert 1 == await db.fetchval("SELECT count(*) FROM inbound_events")


async def test_start_from_an_erased_number_lifts_the_suppression(
    smsc: Smsc, smpp_gateway: Gateway, db: asyncpg.Connection
) -> None:
    """After an erasure, START delivered by the SMSC from that number is the person's own
    opt-in: ESME_ROK, the suppression lifted (ledger evidence, audit log), and the opt-in
    reply goes out by submit_sm."""
    # This gateway serves no HTTP: the erasure is made as POST /v1/privacy/erase makes it.
    await smpp_gateway.api.privacy.erase("sms", "+14155550123", "test")
    assert 0 < await db.fetchval("SELECT count(*) FROM suppression")

    assert 0 == await smsc.mo("START", source="14155550123")

    assert 0 == await db.fetchval("SELECT count(*) FROM suppression")
    evidence = await db.fetchval("SELECT evidence->>'suppression_lifted' FROM ledger")
    assert "yes" == evidence
    assert 1 == await db.fetchval(
        "SELECT count(*) FROM admin_audit WHERE action = 'suppression.lift'"
    )
    state = await smsc.wait_for(lambda s: len(s["submits"]) >= 1)
    assert "14155550123" == state["submits"][0]["dest"]
