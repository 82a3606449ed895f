"""Inbound SMTP handler (I/O layer): aiosmtpd hooks -> InboundMessage -> pipeline -> reply code.

RCPT is checked early (Mailman's LMTP runner is the model): a domain we do not serve gets
550 5.7.1, an unsubscribe address with a bad token 550 5.1.1, a recipient past the limit 452
4.5.3 (RFC 5321 section 4.5.3.1.10). At end of DATA the mail is sorted, in this order:

1. an ARF feedback report (RFC 5965) -> opt-out of the whole list, method ``complaint``
   (``not-spam`` reports, RFC 6430, change nothing);
2. a DSN (RFC 3464) -> a permanently failed recipient is marked undeliverable;
3. an auto-reply (RFC 3834, null sender, Precedence bulk/junk/list) -> accepted, nothing changes;
4. mail to ``unsubscribe+TOKEN@`` -> opt-out of the token's list, method ``mailto``, whatever
   the subject says (Apple Mail sends it with an empty one);
5. mail to ``unsubscribe@`` or to a list address -> the subject, then the first unquoted
   lines, are classified by the list's keywords; the list comes from the recipient address,
   a token in In-Reply-To / References / Subject, or the only list of that domain.

Reports (1, 2) act only when tied to a message we sent, and then only on its own recipient,
or when a configured feedback loop authenticated them (``reports.py``, ``provenance.py``); any
other report is kept as an unverified report, changes nothing and is answered 250 (a refusal
would only make the reporter retry or bounce it back). Mail of kind 5 is authenticated (SPF, DKIM,
DMARC: ``mailauth.py``) and the results go into the evidence; it still opts out whatever
they say (any reasonable means, 47 CFR 64.1200(a)(10)), and the confirmation it queues tells
the real owner of the address, should the mail have been forged, that it happened and how
to rejoin. Mail of kind 4 is not authenticated: the token decides, not the author.

250 is answered only after every resulting change is committed; ``TemporaryFailure`` -> 451
4.3.0 (the client retries, RFC 5321 section 4.2.5) and a refused message -> 550. A mail whose
MIME parts nest deeper than ``MAX_MIME_DEPTH`` is refused for good with 554 5.6.0 before
anything reads it (RFC 3463: X.6.0, a media error; the email package parses and walks the
tree recursively, and 1,000 levels raised RecursionError). No reply names an exception or
quotes what the client sent; log lines carry enumerated values, masked addresses and a
bounded Message-ID, never a token, a subject or a header's free text.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email import policy
from email.message import Message
from email.parser import BytesParser
from typing import Any

from aiosmtpd.smtp import TLSSetupException

from gateway.edges.smtp import parse
from gateway.edges.smtp.mailauth import AuthResults, MailAuthenticator
from gateway.edges.smtp.provenance import Provenance
from gateway.edges.smtp.reports import (
    BounceMarks,
    Mail,
    ReportActions,
    UnverifiedReports,
    dedupe,
)
from gateway.email.links import Target, UnsubscribeLinks
from gateway.errors import BadInput, GatewayError, InvalidAddress, Suppressed
from gateway.logs import HIDE_EXC_MESSAGE, LimitedLog
from gateway.messages import InboundMessage, Method, Outcome
from gateway.security.tokens import TokenError
from gateway.storable import storable
from keywords.classify import classify
from keywords.model import Channel, Intent, IntentKind, MatchKind

log = logging.getLogger(__name__)

_PARSE_IN_THREAD_BYTES = 64 * 1024  # bigger mail is parsed off the event loop
_MAX_EVIDENCE_TEXT = 1_000
# A DSN returning an ARF report of a multipart mail nests five or six deep; nothing a person
# or a reporter sends comes near this.
MAX_MIME_DEPTH = 20
_TOO_DEEP = "554 5.6.0 Message structure too deeply nested"
_TEMPORARY = "451 4.3.0 Temporary failure: please try again later"

Handle = Callable[[InboundMessage], Awaitable[Outcome]]


class InboundMailHandler:
    """The aiosmtpd handler: hooks ``handle_RCPT`` and ``handle_DATA``."""

    def __init__(
        self,
        handle: Handle,
        links: UnsubscribeLinks,
        marks: BounceMarks,
        *,
        provenance: Provenance,
        reports: UnverifiedReports,
        authenticator: MailAuthenticator,
        domains: tuple[str, ...],
        max_recipients: int,
    ) -> None:
        self._handle = handle
        self._links = links
        self._auth = authenticator
        self._report_actions = ReportActions(
            handle, links, marks, provenance, reports, self._authenticate
        )
        self._domains = frozenset(d.lower() for d in domains)
        self._max_rcpts = max_recipients
        self._local = links.settings.unsubscribe_local.lower()
        # A client can fail handshakes or trip our bugs as often as it likes: a few lines a
        # minute per client address, the rest counted.
        self._limited = LimitedLog(log, per_seconds=60.0, burst=5)

    # -- any command: what aiosmtpd answers when one raised ----------------------------
    async def command_failed(self, error: Exception, peer: str) -> str:
        """The answer to a command that raised (aiosmtpd's own is ``500 Error:
        (ExceptionName) message``; the server routes its ``handle_exception`` here). A
        failed STARTTLS handshake is one short line, and aiosmtpd closes the connection
        without using the answer; anything else is a bug of ours: its traceback is logged
        without its message, and the client is told to retry (it may carry an opt-out)."""
        if isinstance(error, TLSSetupException):
            cause = error.__cause__
            reason = getattr(cause, "reason", None) or type(cause).__name__
            self._limited.log(logging.INFO, "smtp tls handshake failed", key=("tls", peer),
                              reason=str(reason)[:60])  # fmt: skip
            return "454 4.7.0 TLS not available"
        log.error("smtp command failed", exc_info=error, extra={HIDE_EXC_MESSAGE: True})
        return _TEMPORARY

    # -- RCPT: validate early -------------------------------------------------------------
    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        local, _, domain = address.rpartition("@")
        if domain.lower() not in self._domains:
            return "550 5.7.1 Relaying denied: we accept mail only for our own domains"
        if len(envelope.rcpt_tos) >= self._max_rcpts:
            return "452 4.5.3 Too many recipients"
        base, plus, token = local.partition("+")
        if base.lower() == self._local and plus:
            try:
                target = self._links.target(token)
            except (TokenError, BadInput):
                return "550 5.1.1 This unsubscribe address is not valid"
            # Verified once per message: DATA takes it from here (bounded, cleared per mail).
            envelope.__dict__.setdefault("gateway_targets", {})[token] = target
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    # -- DATA: sort, commit, answer ------------------------------------------------------
    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any
    ) -> str:
        raw: bytes = envelope.original_content or b""
        try:
            if len(raw) > _PARSE_IN_THREAD_BYTES:
                msg = await asyncio.to_thread(_parse, raw)
            else:
                msg = _parse(raw)
        except RecursionError:
            msg = None
        if msg is None or _depth(msg) > MAX_MIME_DEPTH:
            log.info("smtp refused", extra={"reason": "mime_too_deep"})
            return _TOO_DEEP
        message_id = parse.header(msg, "Message-ID")[:300]
        if not storable(message_id):
            message_id = ""  # the content digest names this mail instead
        mail = Mail(
            msg=msg,
            raw=raw,
            mail_from=envelope.mail_from or "",
            rcpts=tuple(envelope.rcpt_tos),
            key=message_id or "sha256:" + hashlib.sha256(raw).hexdigest(),
            peer=str((session.peer or ("", 0))[0]),
            helo=str(session.host_name or "")[:255],
        )
        try:
            kind, count = await self._dispatch(mail, envelope.__dict__.pop("gateway_targets", {}))
        except GatewayError as exc:
            if exc.temporary:
                return _TEMPORARY
            log.info("smtp refused", extra={"reason": exc.code, "key": mail.key[:80]})
            return f"550 5.6.0 Message refused: {exc.code}"
        except Exception:
            # A bug of ours must not lose a request: defer it so the sender retries (and
            # an operator sees the traceback), never accept what we did not record.
            log.exception(
                "smtp handler failed", extra={"key": mail.key[:80], HIDE_EXC_MESSAGE: True}
            )
            return _TEMPORARY
        # What a mail changed is logged already, a line per change (pipeline.py) or per bounced
        # address; a mail that changed nothing gets a line of its own saying why (auto-reply,
        # not-spam report, nothing recognised).
        level = logging.DEBUG if count else logging.INFO
        log.log(level, "smtp accepted", extra={"kind": kind, "changes": count, "peer": mail.peer})
        return "250 2.0.0 OK: recorded" if count else "250 2.0.0 OK"

    async def _dispatch(self, mail: Mail, verified: dict[str, Target]) -> tuple[str, int]:
        report = parse.feedback_report(mail.msg)
        if report is not None:
            return "complaint", await self._report_actions.complaint(mail, report)
        failures = parse.permanent_failures(mail.msg)
        if failures is not None:
            return "dsn", await self._report_actions.bounces(mail, failures)
        reason = parse.auto_reply_reason(mail.msg, mail.mail_from)
        if reason is not None:
            return f"auto_reply:{reason}", 0
        found: dict[tuple[str, str], tuple[InboundMessage, bool]] = {}
        for rcpt in mail.rcpts:
            message = self._for_recipient(mail, rcpt, verified)
            if message is not None:
                by_author = not self._is_token_address(rcpt)
                found.setdefault((message.sender, message.contact.lower()), (message, by_author))
        auth: dict[str, str] = {}
        if any(by_author for _, by_author in found.values()):
            # A change resting on who wrote the mail: record how far that author is proven.
            auth = (await self._authenticate(mail)).evidence()
        recorded = 0
        for message, by_author in found.values():
            if by_author:
                message = dataclasses.replace(message, evidence={**message.evidence, **auth})
            try:
                await self._handle(message)
            except Suppressed:
                # A mail asking to subscribe an erased address: nothing recorded, and the
                # answer does not tell whoever wrote it (a From anyone can forge) that the
                # address was erased. The person's own way back is a form's confirm link.
                log.info("smtp opt-in refused", extra={"reason": Suppressed.code})
                continue
            recorded += 1
        return "request", recorded

    def _is_token_address(self, rcpt: str) -> bool:
        base, plus, _ = rcpt.rpartition("@")[0].partition("+")
        return bool(plus) and base.lower() == self._local

    async def _authenticate(self, mail: Mail) -> AuthResults:
        return await self._auth.authenticate(mail.raw, mail.peer, mail.mail_from, mail.helo)

    def _for_recipient(
        self, mail: Mail, rcpt: str, verified: dict[str, Target]
    ) -> InboundMessage | None:
        local, _, domain = rcpt.rpartition("@")
        base, plus, token = local.partition("+")
        subject = parse.strip_subject(parse.header(mail.msg, "Subject"))
        lines = parse.first_lines(mail.msg)
        evidence_text = "\n".join([subject, *lines])[:_MAX_EVIDENCE_TEXT]
        if base.lower() == self._local and plus:
            target = verified.get(token) or self._links.target(token)
            return self._message(mail, rcpt, target, Method.MAILTO, self._opt_out(target),
                                 evidence_text)  # fmt: skip
        author = parse.sender_address(mail.msg, mail.mail_from)
        list_id = self._links.list_id(rcpt)
        targets = self._links.find_targets(
            parse.header(mail.msg, "In-Reply-To"),
            parse.header(mail.msg, "References"),
            parse.header(mail.msg, "Subject"),
        )
        if list_id is None:
            known = [t.list_id for t in targets]
            domain_lists = self._links.lists_in(domain)
            list_id = known[0] if known else (domain_lists[0] if len(domain_lists) == 1 else None)
        if list_id is None:
            if base.lower() == self._local:
                # Someone asked to leave and we cannot tell which list: bounce, never drop.
                raise BadInput("cannot tell which list to unsubscribe from", code="unknown_list")
            return None
        # A token for this list names the recipient even when the reply comes from an alias.
        contact = next((t.address for t in targets if t.list_id == list_id), author)
        if not contact:
            raise InvalidAddress("no sender address")
        target = Target(list_id, contact)
        if base.lower() == self._local:
            return self._message(mail, rcpt, target, Method.MAILTO, self._opt_out(target),
                                 evidence_text)  # fmt: skip
        catalog = self._links.lists[list_id]
        for text in (subject, *lines):
            intent = classify(text, catalog)
            if intent.kind is not IntentKind.UNKNOWN:
                return self._message(mail, rcpt, target, Method.EMAIL_REPLY, intent, text)
        return None

    def _opt_out(self, target: Target) -> Intent:
        kind = IntentKind.OPT_OUT if target.program else IntentKind.OPT_OUT_ALL
        language = self._links.lists[target.list_id].default_language
        return Intent(kind, MatchKind.EXACT, language, program=target.program, keyword="mailto")

    def _message(
        self, mail: Mail, rcpt: str, target: Target, method: Method, intent: Intent, text: str
    ) -> InboundMessage:
        evidence = {
            "message_id": mail.key,
            "mail_from": mail.mail_from,
            "rcpt": rcpt,
            "from": parse.header(mail.msg, "From")[:300],
            "subject": parse.header(mail.msg, "Subject")[:300],
            "in_reply_to": parse.header(mail.msg, "In-Reply-To")[:300],
            "peer_ip": mail.peer,
            "source": "smtp",
        }
        return InboundMessage(
            channel=Channel.EMAIL,
            sender=target.list_id,
            contact=target.address,
            text=text or intent.keyword or "",
            method=method,
            dedupe_key=dedupe("smtp", mail.key, target.list_id, target.address),
            received_at=datetime.now(UTC),
            evidence=evidence,
            intent=intent,
        )


def _depth(msg: Message) -> int:
    """How deep the MIME tree nests (1: a single part), counted without recursion; counting
    stops once past ``MAX_MIME_DEPTH``."""
    deepest = 0
    stack: list[tuple[Message, int]] = [(msg, 1)]
    while stack:
        part, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_MIME_DEPTH:
            break
        payload = part.get_payload() if part.is_multipart() else None
        if isinstance(payload, list):
            stack.extend((child, depth + 1) for child in payload if isinstance(child, Message))
    return deepest


def _parse(raw: bytes) -> Message:
    return BytesParser(policy=policy.compat32).parsebytes(raw)
