"""Complaints, bounces and reply mail through the real SMTP edge: only our mail speaks for
our recipients, and reply-mail opt-outs carry SPF, DKIM and DMARC results (a real DNS server)."""

from __future__ import annotations

import asyncio
import email
import json
import smtplib
from email import policy

import asyncpg
import samples
from mailtest import DOMAIN, NEWS, SUBSCRIBER, DkimKey, RelaySink, mail_settings, running
from support import PG_URL, count_rows, eventually

from gateway.app import Gateway
from gateway.email.links import Target
from gateway.settings import Settings

pytest_plugins = ["email_fixtures"]

VICTIM = "victim@example.com"
FBL = f"fbl@{DOMAIN}"


def _send(port: int, mail_from: str, rcpts: list[str], raw: bytes) -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example.org")
        return client.sendmail(mail_from, rcpts, raw)


async def send(gw: Gateway, raw: bytes, rcpts: list[str], mail_from: str) -> None:
    """Deliver with smtplib; every report below is accepted (sendmail raises otherwise)."""
    assert gw.smtp_port is not None
    assert {} == await asyncio.to_thread(_send, gw.smtp_port, mail_from, rcpts, raw)


async def db(settings: Settings) -> asyncpg.Connection:
    return await asyncpg.connect(PG_URL, server_settings={"search_path": settings.database.schema})


async def opted_out(conn: asyncpg.Connection) -> list[tuple[str, str]]:
    rows = await conn.fetch(
        "SELECT c.address, l.method FROM ledger l JOIN contacts c ON c.id = l.contact_id"
        " WHERE l.action = 'opt_out' ORDER BY l.seq"
    )
    return [(r["address"], r["method"]) for r in rows]


async def unverified(conn: asyncpg.Connection) -> list[tuple[str, list[str], str]]:
    rows = await conn.fetch("SELECT kind, named, auth::text AS auth FROM unverified_reports")
    return [(r["kind"], list(r["named"]), json.loads(r["auth"])["spf"]) for r in rows]


def token_header(gw: Gateway, address: str) -> str:
    token = gw.email.links.token(Target(NEWS, address))
    return f"List-Unsubscribe: <https://unsubscribe.acme-health.example/u/{token}>"


async def test_a_forged_complaint_naming_anyone_changes_nothing_and_is_kept_for_review(
    mail_gateway: Gateway, mdb: asyncpg.Connection
) -> None:
    """A well-formed ARF report from an outside address, naming a recipient in
    Original-Rcpt-To with no token of ours, opts nobody out: it is kept as an unverified
    report with who sent it and its SPF result (forger.example publishes -all)."""
    raw = samples.arf(samples.original(None, to=VICTIM), rcpt_to=VICTIM,
                      sender="<abuse@forger.example>")  # fmt: skip
    await send(mail_gateway, raw, [FBL], "abuse@forger.example")

    assert [] == await opted_out(mdb)
    assert [("complaint", [VICTIM], "fail")] == await unverified(mdb)
    row = await mdb.fetchrow("SELECT peer_ip, mail_from, reason FROM unverified_reports")
    assert row is not None
    assert ("127.0.0.1", "abuse@forger.example") == (row["peer_ip"], row["mail_from"])
    assert "not tied to our mail" in row["reason"]
    await send(mail_gateway, raw, [FBL], "abuse@forger.example")  # redelivered: stored once
    assert 1 == await count_rows(mdb, "unverified_reports")


async def test_a_forged_bounce_marks_nobody_undeliverable(
    mail_gateway: Gateway, mdb: asyncpg.Connection
) -> None:
    """A DSN from the null sender naming any address, with nothing of ours in the returned
    headers, marks no address undeliverable and is kept for review."""
    raw = samples.dsn(samples.original(None, to=VICTIM), failed=VICTIM)
    await send(mail_gateway, raw, [f"bounces@{DOMAIN}"], "")

    assert 0 == await count_rows(mdb, "undeliverable")
    assert [("bounce", [VICTIM], "none")] == await unverified(mdb)  # HELO has no SPF record


async def test_a_report_carrying_the_attackers_own_token_acts_only_on_the_attacker(
    mail_gateway: Gateway, mdb: asyncpg.Connection
) -> None:
    """A real token of ours (the attacker's, from their own mail) ties a report to the
    attacker's address alone: the complaint opts out only the attacker, never the victim in
    Original-Rcpt-To, and a DSN naming the victim in Final-Recipient marks nobody."""
    attacker = "eve@example.net"
    returned = samples.original(token_header(mail_gateway, attacker), to=attacker)
    complaint = samples.arf(returned, rcpt_to=VICTIM, sender="<abuse@forger.example>")
    await send(mail_gateway, complaint, [FBL], "abuse@forger.example")
    bounce = samples.dsn(returned, failed=VICTIM)
    await send(mail_gateway, bounce, [f"bounces@{DOMAIN}"], "")

    assert [(attacker, "complaint")] == await opted_out(mdb)
    assert 0 == await count_rows(mdb, "undeliverable")
    assert [("bounce", [VICTIM], "none")] == await unverified(mdb)


async def test_a_feedback_loop_is_believed_only_when_the_report_authenticates_as_it(
    settings: Settings, dkim_key: DkimKey
) -> None:
    """With feedback_loops = ["fbl.example.net"], a report without any token of ours acts on
    its Original-Rcpt-To when SPF passes for an fbl.example.net envelope sender, or a DKIM
    signature with d=fbl.example.net verifies; one that only says From: fbl.example.net (the
    envelope and DKIM of someone else) is kept unverified and changes nothing."""
    smtp = {"feedback_loops": ["fbl.example.net"]}
    async with running(mail_settings(settings, smtp=smtp)) as gw:
        conn = await db(settings)
        try:
            spf_pass = samples.arf(samples.original(None), rcpt_to="one@example.org",
                                   message_id="<arf-spf@fbl.example.net>")  # fmt: skip
            await send(gw, spf_pass, [FBL], "feedback@fbl.example.net")
            dkim_pass = samples.signed(
                samples.arf(samples.original(None), rcpt_to="two@example.org",
                            message_id="<arf-dkim@fbl.example.net>"),
                "fbl.example.net", dkim_key.private_pem,
            )  # fmt: skip
            await send(gw, dkim_pass, [FBL], "relay@forger.example")  # SPF fails, DKIM passes
            claimed = samples.arf(samples.original(None), rcpt_to=VICTIM,
                                  message_id="<arf-claim@fbl.example.net>")  # fmt: skip
            await send(gw, claimed, [FBL], "relay@forger.example")  # From alone proves nothing

            assert [("one@example.org", "complaint"), ("two@example.org", "complaint")] == (
                await opted_out(conn)
            )
            rows = await conn.fetch("SELECT evidence FROM ledger ORDER BY seq")
            evidence = [json.loads(r["evidence"]) for r in rows]
            assert [("fbl.example.net", "pass"), ("fbl.example.net", "fail")] == [
                (e["trusted_reporter"], e["spf"]) for e in evidence
            ]
            assert "pass d=fbl.example.net s=sel1" == evidence[1]["dkim"]
            assert [("complaint", [VICTIM], "fail")] == await unverified(conn)
        finally:
            await conn.close()


async def test_a_bounce_to_our_verp_address_marks_the_messages_own_recipient(
    settings: Settings, relay: RelaySink
) -> None:
    """A confirmation leaves with a VERP envelope sender naming its outbox row; a DSN sent
    back to that address marks the row's recipient undeliverable (with its list) even when
    it names a forwarding address and returns no header of ours."""
    async with running(mail_settings(settings, relay_port=relay.port)) as gw:
        token = gw.email.links.token(Target(NEWS, SUBSCRIBER))
        await send(gw, samples.plain("", "", to=f"unsubscribe+{token}@{DOMAIN}"),
                   [f"unsubscribe+{token}@{DOMAIN}"], "ann.reader@example.org")  # fmt: skip
        [envelope] = await relay.wait_for(1)
        verp = str(envelope.mail_from)
        conn = await db(settings)
        try:
            await eventually(  # the outbox records the send after the relay's 250
                lambda: conn.fetchval("SELECT provider_ref FROM outbox WHERE status = 'sent'"),
                interval=0.05,
                message="the confirmation was never recorded as sent",
            )
            redacted = samples.original(None, to="redacted@example.net")
            await send(gw, samples.dsn(redacted, failed="ann@forward.example"), [verp], "")
            forged = f"bounces+{token}@{DOMAIN}"  # a token, but not a VERP one
            await send(gw, samples.dsn(redacted, failed=VICTIM, message_id="<d2@x>"), [forged], "")

            rows = await conn.fetch("SELECT address, list_id, status FROM undeliverable")
            assert [("ann.reader@example.org", NEWS, "5.1.1")] == [tuple(r) for r in rows]
            assert [("bounce", [VICTIM], "none")] == await unverified(conn)
        finally:
            await conn.close()


async def test_our_own_dkim_signature_ties_a_returned_message_but_headers_alone_do_not(
    settings: Settings, dkim_key: DkimKey
) -> None:
    """A complaint returning a whole message signed with our DKIM key (no token in it) opts
    out the signed To, not the Original-Rcpt-To; the same message with its To changed, or
    only its headers returned (no body hash to check), is not ours and changes nothing."""
    async with running(mail_settings(settings, dkim=dkim_key)) as gw:
        conn = await db(settings)
        try:
            ours = samples.signed(samples.our_message(to="kim@example.org"),
                                  "acme-health.example", dkim_key.private_pem)  # fmt: skip
            forger = "abuse@forger.example"
            await send(gw, samples.arf("", returned=ours, rcpt_to=VICTIM, message_id="<a1@x>"),
                       [FBL], forger)  # fmt: skip
            altered = ours.replace(b"To: <kim@example.org>", b"To: <" + VICTIM.encode() + b">")
            await send(gw, samples.arf("", returned=altered, message_id="<a2@x>"), [FBL],
                       "abuse@forger.example")  # fmt: skip
            headers = ours.partition(b"\r\n\r\n")[0].decode()
            await send(gw, samples.arf(headers, headers_only=True, rcpt_to=VICTIM,
                                       message_id="<a3@x>"), [FBL], forger)  # fmt: skip

            assert [("kim@example.org", "complaint")] == await opted_out(conn)
            evidence = json.loads(await conn.fetchval("SELECT evidence FROM ledger"))
            assert "dkim" == evidence["tied_by"]
            assert 2 == await count_rows(conn, "unverified_reports")
        finally:
            await conn.close()


async def test_reply_opt_outs_record_spf_dkim_and_dmarc_and_send_one_confirmation(
    settings: Settings, relay: RelaySink, dkim_key: DkimKey
) -> None:
    """A reply saying unsubscribe opts its author out and records SPF, DKIM and DMARC with
    their domains; a forged one (example.org's From, a forger's envelope, no signature)
    still opts out, with the failures recorded, and each address gets one confirmation
    that says how to rejoin, so a person opted out by a forgery learns of it."""
    async with running(mail_settings(settings, relay_port=relay.port)) as gw:
        genuine = samples.signed(samples.plain("unsubscribe", "", to=NEWS),
                                 "example.org", dkim_key.private_pem)  # fmt: skip
        await send(gw, genuine, [NEWS], "ann.reader@example.org")
        forged = samples.plain("unsubscribe", "", sender="Bo <bo@example.org>", to=NEWS)
        await send(gw, forged, [NEWS], "someone@forger.example")
        envelopes = await relay.wait_for(2)
        conn = await db(settings)
        try:
            assert [("ann.reader@example.org", "email_reply"),
                    ("bo@example.org", "email_reply")] == await opted_out(conn)  # fmt: skip
            rows = await conn.fetch("SELECT evidence FROM ledger ORDER BY seq")
            genuine_ev, forged_ev = (json.loads(r["evidence"]) for r in rows)
        finally:
            await conn.close()
    auth = ("spf", "spf_domain", "dkim", "dmarc", "dmarc_domain", "dmarc_policy")
    assert ("pass", "example.org", "pass d=example.org s=sel1", "pass", "example.org",
            "reject") == tuple(genuine_ev[k] for k in auth)  # fmt: skip
    assert ("fail", "forger.example", "none", "fail", "example.org", "reject") == tuple(
        forged_ev[k] for k in auth
    )
    assert [["ann.reader@example.org"], ["bo@example.org"]] == sorted(e.rcpt_tos for e in envelopes)
    for envelope in envelopes:
        msg = email.message_from_bytes(envelope.original_content or b"", policy=policy.default)
        body = msg.get_body(("plain",))
        assert body is not None
        assert "To rejoin, reply START" in body.get_content()


async def test_export_lists_and_erasure_removes_an_address_named_by_unverified_reports(
    mail_gateway: Gateway, mdb: asyncpg.Connection
) -> None:
    """Addresses kept from unverified reports are personal data: the data-subject export
    shows the reports naming the address, and erasure takes the address out of them."""
    token = mail_gateway.email.links.token(Target(NEWS, VICTIM))
    await send(
        mail_gateway,
        samples.plain("", "", to=f"unsubscribe+{token}@{DOMAIN}"),
        [f"unsubscribe+{token}@{DOMAIN}"],
        VICTIM,
    )  # fmt: skip  (a contact now)
    raw = samples.arf(samples.original(None, to=VICTIM), rcpt_to=VICTIM)
    await send(mail_gateway, raw, [FBL], "abuse@forger.example")
    privacy = mail_gateway.api.privacy

    exported = await privacy.export("email", VICTIM, "test")
    assert exported is not None
    assert [("complaint", [VICTIM])] == [
        (r["kind"], r["named"]) for r in exported["unverified_reports"]
    ]
    await privacy.erase("email", VICTIM, "test")
    assert [[]] == [
        list(r["named"]) for r in await mdb.fetch("SELECT named FROM unverified_reports")
    ]


async def test_a_dns_server_that_never_answers_delays_a_reply_only_up_to_the_bound(
    settings: Settings,
) -> None:
    """Authentication is bounded: with a name server that takes queries and never answers,
    a reply still opts out within auth_timeout_seconds, its results recorded as temperror."""
    loop = asyncio.get_running_loop()
    silent, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    port = silent.get_extra_info("sockname")[1]
    smtp = {"dns_port": port, "dns_timeout_seconds": 0.2, "auth_timeout_seconds": 0.5}
    try:
        async with running(mail_settings(settings, smtp=smtp)) as gw:
            started = loop.time()
            await send(gw, samples.plain("unsubscribe", "", to=NEWS), [NEWS],
                       "ann.reader@example.org")  # fmt: skip
            elapsed = loop.time() - started
            conn = await db(settings)
            try:
                evidence = json.loads(await conn.fetchval("SELECT evidence FROM ledger"))
            finally:
                await conn.close()
    finally:
        silent.close()
    assert ("temperror", "temperror") == (evidence["spf"], evidence["dmarc"])
    assert elapsed < 3.0
