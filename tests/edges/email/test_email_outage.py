"""Postgres cut off during a burst of unsubscribe mail and one-click POSTs: 451/503, no loss."""

from __future__ import annotations

import asyncio
import smtplib

import aiohttp
import asyncpg
from faults import TcpProxy
from mailtest import DOMAIN, NEWS, mail_settings, running
from support import PG_URL, eventually, make_settings

from gateway.email.links import Target

pytest_plugins = ["email_fixtures"]

BURST = 20


async def test_database_stopped_mid_burst_gives_temporary_errors_and_loses_nothing(
    schema: str, redis_prefix: str
) -> None:
    """While Postgres is unreachable every mail gets 451 and every POST 503; once it is back
    the peers' retries commit each opt-out exactly once."""
    proxy = TcpProxy("127.0.0.1", 5432)
    await proxy.start()
    dsn = f"postgresql://postgres@127.0.0.1:{proxy.port}/test"
    settings = mail_settings(make_settings(schema, redis_prefix, dsn=dsn))
    try:
        async with running(settings) as gw:
            port, http_port = gw.smtp_port, gw.http_port
            assert port is not None
            links = gw.email.links
            mail_to = {f"m{i}@example.org": "" for i in range(BURST)}
            click_for = {f"c{i}@example.org": "" for i in range(BURST)}
            for tokens in (mail_to, click_for):
                for address in tokens:
                    tokens[address] = links.token(Target(NEWS, address))

            def mail(address: str) -> int:
                rcpt = f"unsubscribe+{mail_to[address]}@{DOMAIN}"
                raw = (
                    f"From: <{address}>\r\nSubject: unsubscribe\r\nMessage-ID: <{address}>\r\n\r\n"
                )
                try:
                    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
                        client.sendmail(address, [rcpt], raw.encode())
                except smtplib.SMTPDataError as exc:
                    return exc.smtp_code
                return 250

            async def click(http: aiohttp.ClientSession, address: str) -> int:
                url = f"http://127.0.0.1:{http_port}/u/{click_for[address]}"
                async with http.post(url, data=b"List-Unsubscribe=One-Click") as response:
                    return response.status

            async with aiohttp.ClientSession() as http:
                proxy.cut()
                codes = await asyncio.gather(
                    *(asyncio.to_thread(mail, a) for a in mail_to),
                    *(click(http, a) for a in click_for),
                )
                assert [451] * BURST + [503] * BURST == list(codes)

                proxy.restore()
                pending = set(mail_to) | set(click_for)

                async def all_taken() -> bool:
                    """One retry of each request not yet taken, as their peers would."""
                    for address in sorted(pending):
                        ok = (
                            await asyncio.to_thread(mail, address) == 250
                            if address in mail_to
                            else await click(http, address) == 200
                        )
                        if ok:
                            pending.discard(address)
                    return not pending

                await eventually(  # every 0.1 s: a peer's retry interval, not a sync
                    all_taken,
                    timeout=60,
                    interval=0.1,
                    message=lambda: f"still refused: {len(pending)} requests",
                )
    finally:
        await proxy.close()

    conn = await asyncpg.connect(PG_URL, server_settings={"search_path": schema})
    try:
        rows = await conn.fetch(
            "SELECT c.address, l.method FROM ledger l JOIN contacts c ON c.id = l.contact_id"
        )
    finally:
        await conn.close()
    expected = sorted([(a, "mailto") for a in mail_to] + [(a, "one_click") for a in click_for])
    assert expected == sorted((r["address"], r["method"]) for r in rows)
