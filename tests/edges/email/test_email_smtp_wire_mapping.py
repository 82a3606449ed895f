"""The inbound SMTP edge's wire mapping, in process: the reply code for each pipeline answer.

``InboundMailHandler`` is built as the email wiring builds it (gateway/app/email_wiring.py),
with the links a mail gateway would have, a ``StubPipeline`` for ``handle``, in-memory
stores and a mail authenticator that asks no DNS; most tests call its aiosmtpd hooks
directly, and the last one serves it with ``start_smtp`` on 127.0.0.1 and speaks SMTP to
it. The same answers with real commits are in ``test_email_smtp.py`` and
``test_email_smtp_hostile.py``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator

import aiosmtplib
import pytest
import samples
from aiosmtpd.smtp import Envelope, TLSSetupException
from mailtest import DOMAIN, NEWS, SUBSCRIBER, offline_links
from stubs import StubPipeline, committed

from gateway.edges.smtp.handler import MAX_MIME_DEPTH, InboundMailHandler
from gateway.edges.smtp.mailauth import AuthResults, MailAuthenticator
from gateway.edges.smtp.provenance import Provenance, Sent
from gateway.edges.smtp.resolver import MailResolver
from gateway.edges.smtp.server import start_smtp
from gateway.email.links import Target, UnsubscribeLinks
from gateway.email.settings import SmtpSettings
from gateway.errors import BadInput, Suppressed, TemporaryFailure, UnknownSender
from gateway.messages import Method
from keywords.model import IntentKind

RECORDED = "250 2.0.0 OK: recorded"
ACCEPTED = "250 2.0.0 OK"
TEMPORARY = "451 4.3.0 Temporary failure: please try again later"
AUTHOR = "ann.reader@example.org"


class Marks:
    """Hard bounces, kept in memory."""

    def __init__(self) -> None:
        self.marked: list[tuple[str, str | None]] = []

    async def mark_undeliverable(
        self, address: str, list_id: str | None, status: str, diagnostic: str, dsn_key: str
    ) -> None:
        """Keep the address and its list."""
        self.marked.append((address, list_id))


class Reports:
    """Unverified reports, kept in memory."""

    def __init__(self) -> None:
        self.kinds: list[str] = []

    async def record_unverified(
        self,
        *,
        report_key: str,
        kind: str,
        peer_ip: str,
        helo: str,
        mail_from: str,
        auth: dict[str, str],
        detail: dict[str, str],
        named: list[str],
        reason: str,
    ) -> bool:
        """Keep the report's kind."""
        self.kinds.append(kind)
        return True


class NothingSent:
    """No outbox row was ever sent (no report here is tied to our mail)."""

    async def sent_mail(self, outbox_id: int) -> Sent | None:
        """None: never sent."""
        return None


class NoDns(MailAuthenticator):
    """Authentication that asks nobody: every result ``temperror``, as when DNS is down.
    The reply codes do not depend on the results; only the evidence records them."""

    def __init__(self) -> None:
        super().__init__(MailResolver(("127.0.0.1",), port=9, timeout=0.1), timeout=0.1)
        self.close()  # no check runs in its threads
        self.asked = 0

    async def authenticate(self, raw: bytes, ip: str, mail_from: str, helo: str) -> AuthResults:
        """``temperror`` throughout, counted."""
        self.asked += 1
        return AuthResults.unavailable(mail_from.rpartition("@")[2])


@pytest.fixture
def links() -> UnsubscribeLinks:
    """The mail gateway's links, without the gateway."""
    return offline_links()


@pytest.fixture
def pipeline() -> StubPipeline:
    """A pipeline whose answer each test sets (a commit that opted out, unless told)."""
    return StubPipeline()


@pytest.fixture
def auth() -> NoDns:
    """The authenticator, to count what it was asked."""
    return NoDns()


@pytest.fixture
def handler(links: UnsubscribeLinks, pipeline: StubPipeline, auth: NoDns) -> InboundMailHandler:
    """The handler, as email_wiring.py builds it, on the stub pipeline."""
    reports = Reports()
    return InboundMailHandler(
        pipeline.handle,
        links,
        Marks(),
        provenance=Provenance(links, NothingSent(), own_key=None, feedback_loops=()),
        reports=reports,
        authenticator=auth,
        domains=(DOMAIN,),
        max_recipients=3,
    )


@dataclasses.dataclass
class ClientSession:
    """What the handler reads of aiosmtpd's ``Session``: the peer and its HELO name."""

    peer: tuple[str, int] = ("127.0.0.1", 40000)
    host_name: str = "client.example.org"


async def _deliver(
    handler: InboundMailHandler, rcpts: list[str], raw: bytes, mail_from: str = AUTHOR
) -> tuple[list[str], str]:
    """RCPT for each of ``rcpts``, then DATA: every answer, as the hooks give them."""
    session, envelope = ClientSession(), Envelope()
    envelope.mail_from = mail_from
    answers = [await handler.handle_RCPT(None, session, envelope, rcpt, []) for rcpt in rcpts]
    envelope.original_content = raw
    return answers, await handler.handle_DATA(None, session, envelope)


def _unsubscribe_address(links: UnsubscribeLinks, program: str | None = None) -> str:
    return f"unsubscribe+{links.token(Target(NEWS, SUBSCRIBER, program))}@{DOMAIN}"


def _deep(depth: int, *, to: str) -> bytes:
    """A mail whose body is ``depth`` multiparts, one inside the other."""
    head = f"From: <{AUTHOR}>\r\nTo: {to}\r\nSubject: stop\r\nMIME-Version: 1.0\r\n".encode()
    opening = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
        for i in range(depth)
    )
    closing = b"".join(b"\r\n--b%d--\r\n" % i for i in reversed(range(depth)))
    return head + opening + b"Content-Type: text/plain\r\n\r\nstop\r\n" + closing


async def test_rcpt_answers_before_any_data(
    handler: InboundMailHandler, links: UnsubscribeLinks
) -> None:
    """A domain we do not serve 550 5.7.1, a bad unsubscribe token 550 5.1.1, a recipient
    past the limit 452 4.5.3; our own addresses 250 2.1.5."""
    session, envelope = ClientSession(), Envelope()

    async def rcpt(address: str) -> str:
        return await handler.handle_RCPT(None, session, envelope, address, [])

    assert (await rcpt("someone@elsewhere.example")).startswith("550 5.7.1 ")
    assert "550 5.1.1 This unsubscribe address is not valid" == await rcpt(
        f"unsubscribe+k0.forged@{DOMAIN}"
    )
    assert ["250 2.1.5 OK"] * 3 == [
        await rcpt(_unsubscribe_address(links)),
        await rcpt(f"unsubscribe@{DOMAIN}"),
        await rcpt(NEWS),
    ]
    assert "452 4.5.3 Too many recipients" == await rcpt(NEWS)
    assert 3 == len(envelope.rcpt_tos)


async def test_an_unsubscribe_address_is_250_after_the_commit_of_its_opt_out(
    handler: InboundMailHandler, links: UnsubscribeLinks, pipeline: StubPipeline, auth: NoDns
) -> None:
    """Mail to ``unsubscribe+TOKEN@``: the token's opt-out, 250 once committed; the token
    decides, so the author is not authenticated."""
    rcpt = _unsubscribe_address(links)
    raw = samples.plain("", "", to=rcpt)  # Apple Mail sends it with an empty subject
    assert (["250 2.1.5 OK"], RECORDED) == await _deliver(handler, [rcpt], raw)
    [message] = pipeline.messages
    assert message.intent is not None
    assert (NEWS, Method.MAILTO, IntentKind.OPT_OUT_ALL, "mailto") == (
        message.sender,
        message.method,
        message.intent.kind,
        message.intent.keyword,
    )
    assert 0 == auth.asked


async def test_a_reply_to_the_list_is_classified_and_its_author_authenticated(
    handler: InboundMailHandler, pipeline: StubPipeline, auth: NoDns
) -> None:
    """Mail to the list whose subject is a keyword: the author's request, with the
    authentication results in its evidence, 250 once committed."""
    raw = samples.plain("REMOVE", "", to=NEWS)
    assert (["250 2.1.5 OK"], RECORDED) == await _deliver(handler, [NEWS], raw)
    [message] = pipeline.messages
    assert message.intent is not None
    assert (Method.EMAIL_REPLY, IntentKind.OPT_OUT_ALL, AUTHOR) == (
        message.method,
        message.intent.kind,
        message.contact,
    )
    assert (1, "temperror") == (auth.asked, message.evidence["spf"])


@pytest.mark.parametrize(
    ("answer", "reply"),
    [
        (TemporaryFailure("could not commit"), TEMPORARY),
        (
            BadInput("message id missing", code="bad_message_id"),
            "550 5.6.0 Message refused: bad_message_id",
        ),
        (UnknownSender("not a list"), "550 5.6.0 Message refused: unknown_sender"),
        (Suppressed("erased"), ACCEPTED),
        (RuntimeError("a bug of ours"), TEMPORARY),
    ],
    ids=["temporary", "bad_input", "unknown_sender", "suppressed", "bug"],
)
async def test_each_pipeline_answer_has_its_reply_code(
    handler: InboundMailHandler,
    links: UnsubscribeLinks,
    pipeline: StubPipeline,
    answer: Exception,
    reply: str,
) -> None:
    """Nothing committed 451 (the client retries, RFC 5321 section 4.2.5); refused for good
    550 naming the code; a suppressed address 250 without a word of why (the From can be
    forged); a bug of ours 451, never a 250 for what was not recorded."""
    pipeline.answer = answer
    rcpt = _unsubscribe_address(links)
    assert reply == (await _deliver(handler, [rcpt], samples.plain("", "", to=rcpt)))[1]
    assert 1 == len(pipeline.messages)


async def test_mail_that_changes_nothing_is_250_and_reaches_no_pipeline(
    handler: InboundMailHandler, links: UnsubscribeLinks, pipeline: StubPipeline
) -> None:
    """An auto-reply (RFC 3834) and mail to the list that asks nothing: 250, nothing asked."""
    auto = samples.plain("Out of office", "", to=NEWS, headers={"Auto-Submitted": "auto-replied"})
    assert ACCEPTED == (await _deliver(handler, [NEWS], auto))[1]
    chatter = samples.plain("Thanks for the tips", "Loved the last issue.", to=NEWS)
    assert ACCEPTED == (await _deliver(handler, [NEWS], chatter))[1]
    assert [] == pipeline.messages


async def test_mime_nested_too_deep_is_554_before_anything_reads_it(
    handler: InboundMailHandler, links: UnsubscribeLinks, pipeline: StubPipeline
) -> None:
    """Past ``MAX_MIME_DEPTH`` levels: 554 5.6.0, for good (docs/DESIGN.md, invariant 7)."""
    rcpt = _unsubscribe_address(links)
    raw = _deep(MAX_MIME_DEPTH + 1, to=rcpt)
    assert (
        "554 5.6.0 Message structure too deeply nested" == (await _deliver(handler, [rcpt], raw))[1]
    )
    assert RECORDED == (await _deliver(handler, [rcpt], _deep(4, to=rcpt)))[1]
    assert 1 == len(pipeline.messages)


async def test_a_command_that_raised_is_451_and_a_failed_handshake_454(
    handler: InboundMailHandler, caplog: pytest.LogCaptureFixture
) -> None:
    """What aiosmtpd answers when a hook raised: 451 (retry, it may carry an opt-out) with
    the traceback logged but not the message; a failed STARTTLS 454, one short line."""
    caplog.set_level(logging.INFO, logger="gateway.edges.smtp.handler")
    assert TEMPORARY == await handler.command_failed(KeyError("ann@example.org"), "127.0.0.1")
    handshake = TLSSetupException("handshake failed")
    handshake.__cause__ = OSError("bad record mac")
    assert "454 4.7.0 TLS not available" == await handler.command_failed(handshake, "127.0.0.1")
    failed = [r for r in caplog.records if r.getMessage() == "smtp command failed"]
    tls = [r for r in caplog.records if r.getMessage() == "smtp tls handshake failed"]
    assert ([True], [None]) == ([r.exc_info is not None for r in failed], [r.exc_info for r in tls])


@pytest.fixture
async def smtp_port(handler: InboundMailHandler) -> AsyncIterator[int]:
    """The handler served by the gateway's SMTP server (``start_smtp``) on 127.0.0.1."""
    smtp = dataclasses.replace(SmtpSettings(), host="127.0.0.1", port=0, hostname="mx.test")
    server = await start_smtp(smtp, handler)
    yield server.port
    await server.close()


async def test_the_codes_reach_the_client_over_smtp(
    smtp_port: int, links: UnsubscribeLinks, pipeline: StubPipeline
) -> None:
    """Over a real connection: RCPT refused 550, DATA 250 after the commit, 451 when
    nothing was committed, 550 when refused for good."""
    rcpt = _unsubscribe_address(links)
    raw = samples.plain("", "", to=rcpt)
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=smtp_port, timeout=10) as client:
        await client.ehlo(hostname="client.example.org")
        await client.mail(AUTHOR)
        refused = await client.execute_command(b"RCPT", b"TO:<someone@elsewhere.example>")
        assert 550 == refused.code
        codes = []
        for answer in (committed(), TemporaryFailure("down"), BadInput("no", code="bad_input")):
            pipeline.answer = answer
            await client.rset()
            await client.mail(AUTHOR)
            await client.rcpt(rcpt)
            try:
                codes.append((await client.data(raw)).code)
            except aiosmtplib.SMTPDataError as exc:
                codes.append(exc.code)
    assert [250, 451, 550] == codes
    assert 3 == len(pipeline.messages)
