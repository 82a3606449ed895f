"""Inbound SMTP with real clients (smtplib, swaks): unsubscribe mail, replies, ARF, DSN, limits."""

from __future__ import annotations

import asyncio
import json
import smtplib
import ssl
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import samples
from mailtest import DOMAIN, NEWS, SUBSCRIBER, mail_settings, running
from support import count_rows

from gateway.app import Gateway
from gateway.email.links import Target
from gateway.settings import Settings

pytest_plugins = ["email_fixtures"]

UNSUB = f"unsubscribe@{DOMAIN}"


def token_for(gw: Gateway, address: str = SUBSCRIBER) -> str:
    return gw.email.links.token(Target(NEWS, address))


def _send(port: int, mail_from: str, rcpts: list[str], raw: bytes) -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example.org")
        return client.sendmail(mail_from, rcpts, raw)


async def send(
    gw: Gateway, raw: bytes, rcpts: list[str], mail_from: str = "ann.reader@example.org"
) -> dict[str, tuple[int, bytes]]:
    """Deliver with stdlib smtplib (in a thread: it blocks) to the gateway's SMTP port."""
    assert gw.smtp_port is not None
    return await asyncio.to_thread(_send, gw.smtp_port, mail_from, rcpts, raw)


async def ledger(db: asyncpg.Connection) -> list[tuple[str, str, str, str]]:
    rows = await db.fetch(
        "SELECT c.address, l.action, l.method, l.program FROM ledger l"
        " JOIN contacts c ON c.id = l.contact_id ORDER BY l.seq"
    )
    return [(r["address"], r["action"], r["method"], r["program"]) for r in rows]


async def test_apple_mail_unsubscribe_with_empty_subject_opts_out_the_tokens_recipient(
    mail_gateway: Gateway, mdb: asyncpg.Connection
) -> None:
    """Mail to unsubscribe+TOKEN@ with no subject, from an alias, opts out the token's person."""
    token = token_for(mail_gateway)
    raw = samples.plain(
        "", "", sender="Ann <ann@icloud.example>", to=f"unsubscribe+{token}@{DOMAIN}"
    )
    await send(mail_gateway, raw, [f"unsubscribe+{token}@{DOMAIN}"], "ann@icloud.example")

    assert [("ann.reader@example.org", "opt_out", "mailto", "newsletter")] == await ledger(mdb)
    evidence = json.loads(await mdb.fetchval("SELECT evidence FROM ledger"))
    assert "ann@icloud.example" == evidence["mail_from"]


@pytest.mark.parametrize(
    ("subject", "body"),
    [
        ("Re: Re: Fwd: UNSUBSCRIBE", "sent from my phone"),
        ("Re: Your monthly health tips", "Stop\n\nOn Wed, 25 Nov 2026, Acme wrote:\n> tips"),
        ("AW: Your monthly health tips", "remove me please\n"),
        ("", "unsubscribe"),
        ("Re: Unsubscribe – bitte", "Danke"),  # non-ASCII: sent as an RFC 2047 encoded word
    ],
)
async def test_replies_saying_unsubscribe_stop_or_remove_opt_out(
    mail_gateway: Gateway, mdb: asyncpg.Connection, subject: str, body: str
) -> None:
    """A reply to the list address whose subject or first line asks to leave is an opt-out."""
    await send(mail_gateway, samples.plain(subject, body, to=NEWS), [NEWS])

    assert [("ann.reader@example.org", "opt_out", "email_reply", "newsletter")] == await ledger(mdb)


async def test_a_reply_from_a_case_variant_of_the_address_opts_out_the_same_contact(
    mail_gateway: Gateway, mdb: asyncpg.Connection
) -> None:
    """carol@example.com signs up by mail; "unsubscribe" from Carol@Example.com opts out that
    contact (local parts match case-insensitively), never a second one."""
    signup = samples.plain("SUBSCRIBE NEWSLETTER", "", sender="carol@example.com", to=NEWS)
    await send(mail_gateway, signup, [NEWS], "carol@example.com")
    leave = samples.plain("Re: tips", "unsubscribe", sender="Carol <Carol@Example.com>", to=NEWS)
    await send(mail_gateway, leave, [NEWS], "Carol@Example.com")

    assert [
        ("carol@example.com", "pending", "email_reply", "newsletter"),
        ("carol@example.com", "opt_out", "email_reply", "newsletter"),
    ] == await ledger(mdb)


async def test_a_mail_asking_to_subscribe_an_erased_address_records_nothing(
    mail_gateway: Gateway, mdb: asyncpg.Connection
) -> None:
    """After an erasure, "SUBSCRIBE NEWSLETTER" from that address (any case; a From anyone
    can forge) is answered 250 like any mail, and nothing is recorded: the answer must not
    tell the writer that the address was erased."""
    signup = samples.plain("SUBSCRIBE NEWSLETTER", "", sender="carol@example.com", to=NEWS)
    await send(mail_gateway, signup, [NEWS], "carol@example.com")
    _, key = await mail_gateway.api.store.create_key("t", ["admin"], actor="test")
    url = f"http://127.0.0.1:{mail_gateway.http_port}/v1/privacy/erase"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json={"channel": "email", "contact": "carol@example.com"},
                     headers={"Authorization": f"Bearer {key}"}) as resp,
    ):  # fmt: skip
        assert 200 == resp.status
    before = await mdb.fetchval("SELECT count(*) FROM inbound_events")

    again = samples.plain("SUBSCRIBE NEWSLETTER", "", sender="Carol@Example.com", to=NEWS)
    refused = await send(mail_gateway, again, [NEWS], "Carol@Example.com")

    assert {} == refused  # accepted for every recipient
    assert before == await mdb.fetchval("SELECT count(*) FROM inbound_events")
    assert 0 == await mdb.fetchval("SELECT count(*) FROM contacts WHERE address LIKE '%@%'")


async def test_quoted_text_is_ignored(mail_gateway: Gateway, mdb: asyncpg.Connection) -> None:
    """'unsubscribe' only inside the quoted original or the signature changes nothing."""
    body = (
        "Thanks, great tips!\n\nOn Wed, 25 Nov 2026, Acme wrote:\n> To leave, reply UNSUBSCRIBE\n"
    )
    await send(mail_gateway, samples.plain("Re: Your monthly health tips", body, to=NEWS), [NEWS])
    assert [] == await ledger(mdb)


async def test_unsubscribe_address_without_token_finds_the_list_by_in_reply_to(
    mail_gateway: Gateway, mdb: asyncpg.Connection
) -> None:
    """Mail to plain unsubscribe@ finds list and recipient through the In-Reply-To Message-ID."""
    message_id = mail_gateway.email.links.message_id(Target(NEWS, "dave@example.com"))
    raw = samples.plain("Re: hello", "", sender="Dave <dave.alias@example.com>", to=UNSUB,
                        headers={"In-Reply-To": message_id, "References": message_id})  # fmt: skip
    await send(mail_gateway, raw, [UNSUB])
    assert [("dave@example.com", "opt_out", "mailto", "newsletter")] == await ledger(mdb)


@pytest.mark.parametrize(
    ("headers", "mail_from"),
    [
        ({"Auto-Submitted": "auto-replied"}, "ann.reader@example.org"),
        ({"Precedence": "bulk"}, "ann.reader@example.org"),
        ({"X-Autoreply": "yes"}, "ann.reader@example.org"),
        ({}, ""),
    ],
    ids=["auto-submitted", "precedence", "x-autoreply", "null-sender"],
)
async def test_auto_replies_never_change_consent(
    mail_gateway: Gateway, mdb: asyncpg.Connection, headers: dict[str, str], mail_from: str
) -> None:
    """RFC 3834: an automatic mail saying 'unsubscribe' is accepted and changes nothing."""
    token = token_for(mail_gateway)
    rcpt = f"unsubscribe+{token}@{DOMAIN}"
    raw = samples.plain("Out of office: unsubscribe", "unsubscribe", to=rcpt, headers=headers)
    assert {} == await send(mail_gateway, raw, [rcpt], mail_from)
    assert 0 == await count_rows(mdb, "inbound_events")


async def test_arf_complaint_with_our_token_opts_out_with_method_complaint(
    mail_gateway: Gateway, mdb: asyncpg.Connection
) -> None:
    """An ARF abuse report returning our List-Unsubscribe (Yahoo's and Microsoft's shape:
    headers only, recipient redacted) opts the token's recipient out of the whole list
    (method complaint), and no confirmation is queued for someone who reported us as spam.
    Reports without a tie of ours: tests/edges/email/test_email_reports.py."""
    token = token_for(mail_gateway)
    raw = samples.arf(samples.original(
        f"List-Unsubscribe: <https://unsubscribe.acme-health.example/u/{token}>",
        to="redacted@example.net"), headers_only=True)  # fmt: skip
    await send(mail_gateway, raw, [f"fbl@{DOMAIN}"], "feedback@fbl.example.net")
    assert [("ann.reader@example.org", "opt_out", "complaint", "newsletter")] == await ledger(mdb)
    assert 0 == await count_rows(mdb, "outbox")
    evidence = json.loads(await mdb.fetchval("SELECT evidence FROM ledger"))
    assert "token" == evidence["tied_by"]


async def test_not_spam_feedback_changes_nothing(
    mail_gateway: Gateway, mdb: asyncpg.Connection
) -> None:
    """RFC 6430 'not-spam' feedback is no complaint."""
    raw = samples.arf(samples.original(None), feedback_type="not-spam", rcpt_to=SUBSCRIBER)
    await send(mail_gateway, raw, [f"fbl@{DOMAIN}"], "feedback@fbl.example.net")
    assert [] == await ledger(mdb)


async def test_dsn_marks_permanent_failures_undeliverable_only(
    mail_gateway: Gateway, mdb: asyncpg.Connection
) -> None:
    """A DSN from the null sender marks the 5.1.1 recipient, not the delayed one, twice-safe."""
    token = token_for(mail_gateway, "gone@example.org")
    returned = samples.original(
        f"List-Unsubscribe: <https://u.example/u/{token}>", to="gone@example.org"
    )
    raw = samples.dsn(returned, failed="gone@example.org", delayed="slow@example.org")
    await send(mail_gateway, raw, [f"bounces@{DOMAIN}"], "")
    await send(mail_gateway, raw, [f"bounces@{DOMAIN}"], "")  # redelivered

    rows = await mdb.fetch("SELECT address, list_id, status, bounces FROM undeliverable")
    assert [("gone@example.org", NEWS, "5.1.1", 1)] == [tuple(r) for r in rows]
    assert 0 == await count_rows(mdb, "ledger")


async def test_recipient_checks_happen_at_rcpt_time(mail_gateway: Gateway) -> None:
    """Other domains 550, bad tokens 550, too many recipients 452 (before any DATA)."""
    port = mail_gateway.smtp_port
    assert port is not None

    def probe() -> list[int]:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
            c.ehlo("client.example.org")
            c.mail("ann.reader@example.org")
            codes = [c.rcpt("someone@other.example")[0], c.rcpt(f"unsubscribe+k0.AAAA@{DOMAIN}")[0]]
            codes += [c.rcpt(f"x{i}@{DOMAIN}")[0] for i in range(51)]
            return codes

    codes = await asyncio.to_thread(probe)
    assert [550, 550] + [250] * 50 + [452] == codes


async def test_oversized_mail_is_refused_with_552(settings: Settings) -> None:
    """A message over max_message_bytes is refused (RFC 5321 section 4.5.3.1.7)."""
    async with running(mail_settings(settings, smtp={"max_message_bytes": 2048})) as gw:
        raw = samples.plain("unsubscribe", "x" * 10_000, to=NEWS)
        with pytest.raises(smtplib.SMTPException) as refused:
            await send(gw, raw, [NEWS])
    assert 552 == getattr(refused.value, "smtp_code", None)


async def test_connections_past_the_limit_get_421(settings: Settings) -> None:
    """With max_connections = 2 a third client is told 421 and the first two still work."""
    async with running(mail_settings(settings, smtp={"max_connections": 2})) as gw:
        assert gw.smtp_port is not None
        port = gw.smtp_port

        def connect_three() -> tuple[int, int, int]:
            first, second = smtplib.SMTP("127.0.0.1", port), smtplib.SMTP("127.0.0.1", port)
            try:
                with pytest.raises(smtplib.SMTPConnectError) as refused:
                    smtplib.SMTP("127.0.0.1", port)
                return first.noop()[0], second.noop()[0], refused.value.smtp_code
            finally:
                first.quit()
                second.quit()

        assert (250, 250, 421) == await asyncio.to_thread(connect_three)


async def test_swaks_delivers_an_unsubscribe_mail(
    mail_gateway: Gateway, mdb: asyncpg.Connection
) -> None:
    """swaks, a real SMTP client that shares nothing with ours, gets 250 after the commit."""
    rcpt = f"unsubscribe+{token_for(mail_gateway)}@{DOMAIN}"
    proc = await asyncio.create_subprocess_exec(
        "swaks", "--server", f"127.0.0.1:{mail_gateway.smtp_port}", "--from",
        "ann.reader@example.org", "--to", rcpt, "--header", "Subject: unsubscribe",
        "--body", "please remove me", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    assert 0 == proc.returncode, out.decode()[-500:]
    assert [("ann.reader@example.org", "opt_out", "mailto", "newsletter")] == await ledger(mdb)


async def test_starttls_is_offered_and_works(
    settings: Settings, tls_files: tuple[Path, Path]
) -> None:
    """With a certificate configured, EHLO offers STARTTLS and mail goes through over TLS."""
    cert, key = tls_files
    tls = {"tls_cert_file": str(cert), "tls_key_file": str(key)}
    async with running(mail_settings(settings, smtp=tls)) as gw:
        rcpt = f"unsubscribe+{token_for(gw)}@{DOMAIN}"
        raw = samples.plain("unsubscribe", "", to=rcpt)
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False  # the test certificate names localhost, we dial an IP
        port = gw.smtp_port
        assert port is not None

        def over_tls() -> tuple[bool, int, str]:
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
                c.ehlo("client.example.org")
                offered = c.has_extn("starttls")
                c.starttls(context=context)
                c.ehlo("client.example.org")
                c.sendmail("ann.reader@example.org", [rcpt], raw)
                sock = c.sock
                assert isinstance(sock, ssl.SSLSocket)
                return offered, c.noop()[0], str(sock.version())

        offered, code, version = await asyncio.to_thread(over_tls)
    assert (True, 250) == (offered, code)
    assert version.startswith("TLSv1.")


async def test_plain_unsubscribe_address_uses_the_domains_only_list_and_the_author(
    mail_gateway: Gateway, mdb: asyncpg.Connection
) -> None:
    """With no token anywhere, unsubscribe@ opts the From address out of that domain's list."""
    raw = samples.plain("", "", sender="Eve <eve@example.com>", to=UNSUB)
    await send(mail_gateway, raw, [UNSUB], "eve@example.com")
    assert [("eve@example.com", "opt_out", "mailto", "newsletter")] == await ledger(mdb)


async def test_an_unsubscribe_request_we_cannot_place_is_bounced_not_dropped(
    settings: Settings,
) -> None:
    """unsubscribe@ a served domain with no list and no token gets 550, so the person knows."""
    domains = {"domains": [DOMAIN, "other.example"]}
    async with running(mail_settings(settings, smtp=domains)) as gw:
        raw = samples.plain("unsubscribe", "", to="unsubscribe@other.example")
        with pytest.raises(smtplib.SMTPDataError) as refused:
            await send(gw, raw, ["unsubscribe@other.example"])
    assert 550 == refused.value.smtp_code


async def test_one_mail_to_two_unsubscribe_addresses_opts_both_out(
    mail_gateway: Gateway, mdb: asyncpg.Connection
) -> None:
    """Each recipient of one envelope is handled; the single 250 follows both commits."""
    rcpts = [f"unsubscribe+{token_for(mail_gateway, a)}@{DOMAIN}"
             for a in ("one@example.org", "two@example.org")]  # fmt: skip
    assert {} == await send(mail_gateway, samples.plain("", "", to=rcpts[0]), rcpts)
    assert ["one@example.org", "two@example.org"] == sorted(r[0] for r in await ledger(mdb))
