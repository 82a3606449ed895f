"""Bind life and misbehaving SMSCs: the simulator drops, stalls, throttles, nacks, garbles."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import asyncpg
from smsc_sim import Smsc, bound_gateway, smpp_settings
from support import PG_URL, eventually

from gateway.app import Gateway
from gateway.senders.base import OutboxRow
from gateway.settings import OutboxSettings, Settings


async def _sent(settings: Settings) -> list[str]:
    conn = await asyncpg.connect(PG_URL, server_settings={"search_path": settings.database.schema})
    try:
        return [r["status"] for r in await conn.fetch("SELECT status FROM outbox ORDER BY id")]
    finally:
        await conn.close()


async def _wait_sent(settings: Settings, count: int, within: float = 20.0) -> None:
    statuses: list[str] = []

    async def enough() -> bool:
        statuses[:] = await _sent(settings)
        return statuses.count("sent") >= count

    await eventually(
        enough, timeout=within, interval=0.05, message=lambda: f"{count} not sent: {statuses}"
    )


async def test_rejected_bind_is_retried_until_accepted(settings: Settings, smsc: Smsc) -> None:
    """A refused bind (ESME_RBINDFAIL) is retried with backoff; the bind succeeds once the
    SMSC accepts again, and texts then flow."""
    await smsc.mode(bind="reject")
    async with Gateway(smpp_settings(settings, smsc), serve_http=False):
        await smsc.wait_for(lambda s: s["bind_rejects"] >= 2)
        await smsc.mode(bind="ok")
        await smsc.wait_bound()
        assert 0 == await smsc.mo("STOP", source="14155550200")


async def test_connection_dropped_mid_window_loses_nothing(settings: Settings, smsc: Smsc) -> None:
    """The SMSC dropping the bind with deliver_sm outstanding: after the reconnect every text
    is recorded once and answered once."""
    async with bound_gateway(settings, smsc) as gw:
        flood = asyncio.create_task(smsc.call("POST", "/flood", {
            "count": 300, "dest": "12345", "text": "STOP", "window": 50,
            "source_base": "14155510000"}))  # fmt: skip
        await smsc.wait_for(lambda s: len(s["submits"]) >= 20)
        await smsc.call("POST", "/drop")
        result = await flood
        assert 300 == result["acked"]
        assert 300 == await gw.pool.fetchval("SELECT count(*) FROM inbound_events")
        await _wait_sent(settings, 300)
        state = await smsc.state()
        assert state["binds"] >= 2
        assert 300 == len({m["dest"] for m in state["submits"]})


async def test_unanswered_submit_times_out_and_is_retried(settings: Settings, smsc: Smsc) -> None:
    """A submit_sm the SMSC never answers times out (window slot freed) and the reply is sent
    again later."""
    await smsc.mode(submit="silent", submit_count=1)
    async with bound_gateway(settings, smsc, response_timeout_seconds=0.3):
        assert 0 == await smsc.mo("STOP", source="14155550201")
        await _wait_sent(settings, 1)
        answered = [m["answered"] for m in await smsc.submits()]
        assert [None, 0] == answered


async def test_throttled_submit_backs_off_then_succeeds(settings: Settings, smsc: Smsc) -> None:
    """ESME_RTHROTTLED and ESME_RMSGQFUL pause the bind and the same reply is tried again."""
    await smsc.mode(submit="throttle", submit_count=3)
    async with bound_gateway(settings, smsc):
        assert 0 == await smsc.mo("STOP", source="14155550202")
        await _wait_sent(settings, 1)
        assert [0x58, 0x58, 0x58, 0] == [m["answered"] for m in await smsc.submits()]
    await smsc.mode(submit="msgqful", submit_count=1)
    async with bound_gateway(settings, smsc):
        assert 0 == await smsc.mo("HELP", source="14155550203")
        await _wait_sent(settings, 2)


async def test_generic_nack_to_submit_is_retried(settings: Settings, smsc: Smsc) -> None:
    """A generic_nack answering our submit_sm is a temporary failure: the outbox retries."""
    await smsc.mode(submit="generic_nack", submit_count=1)
    async with bound_gateway(settings, smsc):
        assert 0 == await smsc.mo("STOP", source="14155550204")
        await _wait_sent(settings, 1)
        assert 2 == len(await smsc.submits())


async def test_malformed_pdu_gets_generic_nack_and_session_lives(
    settings: Settings, smsc: Smsc
) -> None:
    """A deliver_sm whose sm_length runs past its end, and an outbind/cancel_sm/replace_sm,
    are answered generic_nack; the bind stays up and the next text is handled."""
    async with bound_gateway(settings, smsc):
        bad = "0000002c0000000500000000000003e7" + "00" * 24 + "ff" + "41" * 3
        await smsc.call("POST", "/raw", {"hex": bad})
        for command in ("0000000b", "00000008", "00000007"):
            await smsc.call("POST", "/raw", {"hex": "00000010" + command + "0000000000000063"})
        await smsc.wait_for(lambda s: s["generic_nacks"] >= 4)
        assert 0 == await smsc.mo("STOP", source="14155550205")
        assert 1 == (await smsc.state())["binds"]


async def test_truncated_pdu_is_a_dead_peer_and_rebinds(settings: Settings, smsc: Smsc) -> None:
    """A PDU cut short stalls the stream; the enquire_link then goes unanswered, the gateway
    drops the connection and binds again."""
    async with bound_gateway(settings, smsc, enquire_link_seconds=0.2,
                             response_timeout_seconds=0.3):  # fmt: skip
        await smsc.call("POST", "/raw", {"hex": "00000100000000050000000000000001"})
        await smsc.wait_for(lambda s: s["binds"] >= 2)
        await smsc.wait_bound()
        assert 0 == await smsc.mo("STOP", source="14155550206")


async def test_silent_enquire_link_means_reconnect(settings: Settings, smsc: Smsc) -> None:
    """An SMSC that stops answering enquire_link is taken for dead and bound again."""
    async with bound_gateway(settings, smsc, enquire_link_seconds=0.1,
                             response_timeout_seconds=0.2):  # fmt: skip
        await smsc.mode(enquire_link="silent")
        await smsc.wait_for(lambda s: s["binds"] >= 2)


async def test_receiver_and_transmitter_binds(settings: Settings, smsc: Smsc) -> None:
    """bind = receiver_transmitter opens two binds: texts arrive on one, replies leave on the
    other, and shutdown unbinds both cleanly."""
    async with bound_gateway(settings, smsc, bind="receiver_transmitter"):
        await smsc.wait_for(lambda s: s["binds"] == 2)
        assert 0 == await smsc.mo("STOP", source="14155550207")
        await _wait_sent(settings, 1)
    state = await smsc.wait_for(lambda s: s["bound"] == 0)
    assert 2 == state["unbinds"]


async def test_submit_rate_is_limited_per_bind(settings: Settings, smsc: Smsc) -> None:
    """submit_rate = 20/s: 10 replies take at least 0.45 s to leave."""
    async with bound_gateway(settings, smsc, submit_rate=20.0) as gw:
        started = time.monotonic()
        await asyncio.gather(*(smsc.mo("HELP", source=f"1415555030{n}") for n in range(10)))
        await _wait_sent(settings, 10)
        assert time.monotonic() - started >= 0.45
        assert gw.smpp is not None


async def test_long_and_unicode_replies_are_split_for_the_peer(
    settings: Settings, smsc: Smsc
) -> None:
    """A long GSM reply and a long UCS-2 reply are sent as UDH parts that the simulator's own
    decoder reassembles to the original text, escape and surrogate pairs intact."""
    async with bound_gateway(settings, smsc) as gw:
        assert gw.smpp is not None
        texts = ["a" * 152 + "€" + "b" * 100, "ó" * 66 + "😀" + "z" * 40]
        for n, text in enumerate(texts):
            row = OutboxRow(n + 1, "sms", "12345", None, "+14155550400", "help", "en", text, 1)
            await gw.smpp.sender.send(row)
        submits = await smsc.submits()
        gsm = [m for m in submits if m["data_coding"] == 0]
        ucs2 = [m for m in submits if m["data_coding"] == 8]
        assert (2, 2) == (len(gsm), len(ucs2))
        assert texts == ["".join(m["text"] for m in gsm), "".join(m["text"] for m in ucs2)]
        assert all(m["esm_class"] & 0x40 for m in submits)


async def test_a_rebind_sends_waiting_replies_at_once(settings: Settings, smsc: Smsc) -> None:
    """A reply that failed while the SMSC went away waits out no backoff once it is back:
    the new bind brings it forward, so an opt-out is confirmed within minutes, not later."""
    slow_retries = OutboxSettings(
        poll_interval_seconds=0.1, backoff_base_seconds=60.0, backoff_max_seconds=300.0
    )
    configured = dataclasses.replace(smpp_settings(settings, smsc), outbox=slow_retries)
    async with Gateway(configured, serve_http=False):
        await smsc.wait_bound()
        await smsc.mode(submit="drop", submit_count=1)  # the first reply loses the bind
        started = time.monotonic()
        assert 0 == await smsc.mo("STOP", source="14155550300")
        await _wait_sent(settings, 1, within=10.0)
        assert time.monotonic() - started < 10.0  # the backoff alone would be 30-60 s
        assert (await smsc.state())["binds"] >= 2
