"""Faults under load: Postgres cut off during a flood, the gateway SIGKILLed mid-flood and
between a submit_sm and its record. The peer is the node-smpp simulator throughout, which,
like a real SMSC, keeps every text not acknowledged ESME_ROK and delivers it again."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from faults import TcpProxy
from processes import GatewayProcess
from smsc_sim import PASSWORD, Smsc, bound_gateway, password_env, smpp_settings
from support import PG_URL, REDIS_URL, eventually, make_settings

from gateway.app import Gateway
from gateway.settings import Settings


async def _connect(schema: str) -> asyncpg.Connection:
    return await asyncpg.connect(PG_URL, server_settings={"search_path": schema})


async def _wait_all_sent(schema: str, count: int, within: float = 60.0) -> None:
    conn = await _connect(schema)
    try:

        async def all_sent() -> bool:
            sent = await conn.fetchval("SELECT count(*) FROM outbox WHERE status = 'sent'")
            return bool(sent >= count)

        await eventually(all_sent, timeout=within, interval=0.1, message="replies not all sent")
    finally:
        await conn.close()


async def _assert_once_each(schema: str, texts: int) -> None:
    """Every text: one inbound event, a ledger event per program, exactly one reply row."""
    conn = await _connect(schema)
    try:
        assert texts == await conn.fetchval("SELECT count(DISTINCT contact_id) FROM inbound_events")
        assert texts == await conn.fetchval("SELECT count(*) FROM inbound_events")
        ledger = await conn.fetchrow(
            "SELECT count(*) AS n, count(DISTINCT (inbound_id, program)) AS d FROM ledger"
        )
        assert ledger is not None
        assert (2 * texts, 2 * texts) == (ledger["n"], ledger["d"])
        assert texts == await conn.fetchval("SELECT count(DISTINCT inbound_id) FROM outbox")
        assert texts == await conn.fetchval("SELECT count(*) FROM outbox")
    finally:
        await conn.close()


async def test_postgres_cut_off_during_a_flood(schema: str, redis_prefix: str, smsc: Smsc) -> None:
    """Postgres unreachable mid-flood: texts are answered ESME_RX_T_APPN (nothing
    acknowledged that is not committed); once it is back every text is recorded once."""
    proxy = TcpProxy("127.0.0.1", 5432)
    await proxy.start()
    settings = make_settings(
        schema, redis_prefix, dsn=f"postgresql://postgres@127.0.0.1:{proxy.port}/test"
    )
    try:
        async with bound_gateway(settings, smsc):
            flood = asyncio.create_task(smsc.call("POST", "/flood", {
                "count": 600, "dest": "12345", "text": "STOP", "window": 50,
                "source_base": "14155520000"}))  # fmt: skip
            await smsc.wait_for(lambda s: s["acked"] >= 100, summary=True)
            proxy.cut()
            await smsc.wait_for(lambda s: s["errors"] >= 50, summary=True)
            proxy.restore()
            assert 600 == (await flood)["acked"]
            await _wait_all_sent(schema, 600)
    finally:
        await proxy.close()
    await _assert_once_each(schema, 600)
    assert 600 == (await smsc.summary())["distinct_dests"]


def _gateway_process(tmp_path: Path, schema: str, prefix: str, smsc: Smsc) -> GatewayProcess:
    env = {"GATEWAY_DATABASE_URL": PG_URL, "GATEWAY_REDIS_URL": REDIS_URL, **password_env()}
    proc = GatewayProcess(tmp_path, schema=schema, redis_prefix=prefix, env=env)
    with proc.config.open("a", encoding="utf-8") as config:
        config.write(
            "[outbox]\npoll_interval_seconds = 0.1\nlease_seconds = 2.0\n"
            "backoff_base_seconds = 0.1\nbackoff_max_seconds = 0.5\n"
            "[smpp]\nshutdown_timeout_seconds = 2.0\n"
            '[smpp.senders]\n"12345" = ["sim"]\n'
            f'[smpp.smsc.sim]\nhost = "127.0.0.1"\nport = {smsc.smpp_port}\n'
            'system_id = "gateway"\nwindow = 50\nsubmit_rate = 100000.0\n'
            "reconnect_min_seconds = 0.05\nreconnect_max_seconds = 0.5\n"
            "registered_delivery = false\n"
        )
    assert PASSWORD in proc.env.values()
    return proc


@pytest.mark.slow
async def test_sigkill_during_a_flood_of_10000_texts(
    tmp_path: Path, schema: str, redis_prefix: str, smsc: Smsc
) -> None:
    """The gateway SIGKILLed while 10,000 texts stream in, then restarted: no acknowledged
    text lost, no duplicate ledger event, one reply row per text, every reply sent; the only
    repeats the SMSC sees are replies in flight at the kill (at least once, by design)."""
    gw = _gateway_process(tmp_path, schema, redis_prefix, smsc)
    gw.start()
    try:
        await smsc.wait_bound()
        flood = asyncio.create_task(smsc.call("POST", "/flood", {
            "count": 10_000, "dest": "12345", "text": "STOP", "window": 100,
            "source_base": "14155600000"}))  # fmt: skip
        await smsc.wait_for(lambda s: s["acked"] >= 3_000, summary=True, within=60)
        assert -signal.SIGKILL == gw.stop(signal.SIGKILL)
        acked_at_kill = (await smsc.summary())["acked"]
        gw.start()
        result = await asyncio.wait_for(flood, 120)
        assert 10_000 == result["acked"]
        assert acked_at_kill < 10_000
        await _wait_all_sent(schema, 10_000, within=90)
    finally:
        gw.stop()
    await _assert_once_each(schema, 10_000)
    summary = await smsc.summary()
    assert 10_000 == summary["distinct_dests"]
    assert summary["submits"] - 10_000 <= 200  # at most the replies in flight at the kill


@pytest.mark.slow
async def test_killed_between_submit_and_record_resends_once(
    tmp_path: Path, schema: str, redis_prefix: str, smsc: Smsc
) -> None:
    """Killed after the submit_sm left but before the outbox recorded it: the lease runs out
    and the reply is sent again (at least once: a second copy beats a missing STOP answer);
    the row ends 'sent' with the second submit's id."""
    gw = _gateway_process(tmp_path, schema, redis_prefix, smsc)
    gw.start()
    try:
        await smsc.wait_bound()
        await smsc.mode(submit_delay_ms=60_000)  # the SMSC holds its answer
        assert 0 == await smsc.mo("STOP", source="14155550300")
        await smsc.wait_for(lambda s: s["submits"] == 1, summary=True)
        gw.stop(signal.SIGKILL)
        await smsc.mode(submit_delay_ms=0)
        gw.start()
        await _wait_all_sent(schema, 1, within=30)
    finally:
        gw.stop()
    submits = await smsc.submits()
    assert [None, 0] == [m["answered"] for m in submits]
    assert {"14155550300"} == {m["dest"] for m in submits}
    conn = await _connect(schema)
    try:
        row = await conn.fetchrow("SELECT status, attempts, provider_ref FROM outbox")
    finally:
        await conn.close()
    assert row is not None
    assert ("sent", 2, f"sim/{submits[1]['message_id']}") == tuple(row)


async def test_a_reply_to_a_number_that_is_not_ascii_fails_alone(
    smsc: Smsc, smpp_gateway: Gateway, db: asyncpg.Connection
) -> None:
    """A confirmation queued (by an older release) to '+14155٥٥٠١٢٥' made submit_sm raise
    UnicodeEncodeError and ended the outbox worker. Now that row fails for good with its
    reason, and the next STOP's confirmation still reaches the SMSC."""
    contact = await db.fetchval(
        "INSERT INTO contacts (channel, address) VALUES ('sms', $1) RETURNING id",
        "+14155\u0665\u0665\u0660\u0661\u0662\u0665",
    )
    await db.execute(
        "INSERT INTO outbox (channel, sender, contact_id, recipient, kind, language, body)"
        " VALUES ('sms', '12345', $1, $2, 'opt_out', 'en', 'You are unsubscribed.')",
        contact,
        "+14155\u0665\u0665\u0660\u0661\u0662\u0665",
    )
    smpp_gateway.outbox.wake()

    assert 0 == await smsc.mo("STOP", source="14155550199")

    await smsc.wait_for(lambda s: any(m["dest"] == "14155550199" for m in s["submits"]))
    row = await db.fetchrow("SELECT status, last_error FROM outbox WHERE contact_id = $1", contact)
    assert row is not None
    assert ("failed", "recipient is not an E.164 number") == (row["status"], row["last_error"])
    assert smpp_gateway.supervisor.running("outbox")


async def test_readyz_and_metrics_show_an_smsc_bind_that_is_down(
    settings: Settings, smsc: Smsc
) -> None:
    """Short code 12345 sends its replies by SMPP: while no bind is up /readyz answers 503
    naming it and gateway_smpp_binds_up{smsc="sim"} is 0; once bound, 200 and 1."""
    await smsc.mode(bind="reject")
    async with Gateway(smpp_settings(settings, smsc)) as gw:
        base = f"http://127.0.0.1:{gw.http_port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/readyz") as resp:
                assert 503 == resp.status
                assert ["12345"] == (await resp.json())["smpp_unbound_senders"]
            async with http.get(f"{base}/metrics") as resp:
                assert 'gateway_smpp_binds_up{smsc="sim"} 0.0' in await resp.text()

            await smsc.mode(bind="ok")
            await smsc.wait_bound()

            async def ready() -> bool:
                async with http.get(f"{base}/readyz") as resp:
                    return resp.status == 200

            # The bind's answer reaches the gateway after the simulator's count.
            await eventually(ready, interval=0.05, message="/readyz never answered 200")
            async with http.get(f"{base}/metrics") as resp:
                assert 'gateway_smpp_binds_up{smsc="sim"} 1.0' in await resp.text()


async def test_an_smsc_outage_longer_than_max_attempts_loses_no_confirmation(
    settings: Settings, smsc: Smsc
) -> None:
    """While the SMSC refuses every bind, an opt-out's confirmation waits queued with no
    attempt spent: with two attempts at most, counting the refusals ("no SMSC bound") made it
    'failed' for good after two rounds, so the person never got the one confirmation the
    rules require. Once the bind is back it leaves, on its first counted attempt."""
    await smsc.mode(bind="reject")
    base = smpp_settings(settings, smsc)
    outage = dataclasses.replace(base, outbox=dataclasses.replace(base.outbox, max_attempts=2))
    async with Gateway(outage, serve_http=False) as gw:
        conn = await _connect(settings.database.schema)
        try:
            contact = await conn.fetchval(
                "INSERT INTO contacts (channel, address) VALUES ('sms', '+14155550321')"
                " RETURNING id"
            )
            await conn.execute(
                "INSERT INTO outbox (channel, sender, contact_id, recipient, kind, language,"
                " body) VALUES ('sms', '12345', $1, '+14155550321', 'opt_out', 'en',"
                " 'You are unsubscribed.')",
                contact,
            )
            # Three rounds with the row due: the older code leased it in each one, and its
            # second "no SMSC bound" ended it (max_attempts = 2).
            for _ in range(3):
                await conn.execute("UPDATE outbox SET next_attempt_at = now()")
                assert 0 == await gw.outbox.run_once()
            waiting = await conn.fetchrow("SELECT status, attempts FROM outbox")
            assert waiting is not None
            assert ("queued", 0) == tuple(waiting)

            await smsc.mode(bind="ok")
            await smsc.wait_bound()
            await smsc.wait_for(lambda st: any(m["dest"] == "14155550321" for m in st["submits"]))

            async def sent() -> bool:
                status = await conn.fetchval("SELECT status FROM outbox")
                return bool(status == "sent")

            await eventually(sent, interval=0.05, message="the confirmation was never recorded")
            assert 1 == await conn.fetchval("SELECT attempts FROM outbox")
        finally:
            await conn.close()
