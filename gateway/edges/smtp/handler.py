"""Inbound SMTP handler (I/O layer): aiosmtpd hooks -> InboundMessage -> pipeline -> reply code.

RCPT is checked early (Mailman's LMTP runner is the model): a domain we do not serve gets
550 5.7.1, an unsubscribe address with a bad token 550 5.1.1, a recipient past the limit 452
4.5.3 (RFC 5321 section 4.5.3.1.10). At end of DATA the mail is sorted, in this order:

1. an ARF feedback report (RFC 5965) -> opt-out of the whole list, method ``complaint``
   (``not-spam`` reports, RFC 6430, change nothing);
2. a DSN (RFC 3464) -> every permanently failed recipient is marked undeliverable;
3. an auto-reply (RFC 3834, null sender, Precedence bulk/junk/list) -> accepted, nothing changes;
4. mail to ``unsubscribe+TOKEN@`` -> opt-out of the token's list, method ``mailto``, whatever
   the subject says (Apple Mail sends it with an empty one);
5. mail to ``unsubscribe@`` or to a list address -> the subject, then the first unquoted
   lines, are classified by the list's keywords; the list comes from the recipient address,
   a token in In-Reply-To / References / Subject, or the only list of that domain.

250 is answered only after every resulting change is committed; ``TemporaryFailure`` -> 451
4.3.0 (the client retries, RFC 5321 section 4.2.5) and a refused message -> 550.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import Message
from email.parser import BytesParser
from typing import Any, Protocol

from gateway.edges.smtp import parse
from gateway.edges.unsubscribe import Target, UnsubscribeLinks
from gateway.errors import BadInput, GatewayError, InvalidAddress, Suppressed
from gateway.logs import mask_address
from gateway.messages import InboundMessage, Method, Outcome
from gateway.tokens import TokenError
from keywords.classify import classify
from keywords.model import Channel, Intent, IntentKind, MatchKind

log = logging.getLogger(__name__)

_PARSE_IN_THREAD_BYTES = 64 * 1024  # bigger mail is parsed off the event loop
_MAX_EVIDENCE_TEXT = 1_000

Handle = Callable[[InboundMessage], Awaitable[Outcome]]


class BounceMarks(Protocol):
    """What the handler needs to record hard bounces (``gateway.store.email_marks``)."""

    async def mark_undeliverable(
        self, address: str, list_id: str | None, status: str, diagnostic: str, dsn_key: str
    ) -> None:
        """Record one permanent failure."""


@dataclass(frozen=True, slots=True)
class _Mail:
    msg: Message
    mail_from: str
    rcpts: tuple[str, ...]
    key: str  # Message-ID, or a digest of the content when there is none
    peer: str


class InboundMailHandler:
    """The aiosmtpd handler: hooks ``handle_RCPT`` and ``handle_DATA``."""

    def __init__(
        self,
        handle: Handle,
        links: UnsubscribeLinks,
        marks: BounceMarks,
        *,
        domains: tuple[str, ...],
        max_recipients: int,
    ) -> None:
        self._handle = handle
        self._links = links
        self._marks = marks
        self._domains = frozenset(d.lower() for d in domains)
        self._max_rcpts = max_recipients
        self._local = links.settings.unsubscribe_local.lower()
        self._by_domain: dict[str, list[str]] = {}
        for list_id in links.lists:
            self._by_domain.setdefault(list_id.rpartition("@")[2].lower(), []).append(list_id)
        self._list_ids = {list_id.lower(): list_id for list_id in links.lists}

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
        if len(raw) > _PARSE_IN_THREAD_BYTES:
            msg = await asyncio.to_thread(_parse, raw)
        else:
            msg = _parse(raw)
        message_id = parse.header(msg, "Message-ID")[:300]
        mail = _Mail(
            msg=msg,
            mail_from=envelope.mail_from or "",
            rcpts=tuple(envelope.rcpt_tos),
            key=message_id or "sha256:" + hashlib.sha256(raw).hexdigest(),
            peer=str((session.peer or ("", 0))[0]),
        )
        try:
            kind, count = await self._dispatch(mail, envelope.__dict__.pop("gateway_targets", {}))
        except GatewayError as exc:
            if exc.temporary:
                return "451 4.3.0 Temporary failure: please try again later"
            log.info("smtp refused", extra={"reason": exc.code, "key": mail.key[:80]})
            return f"550 5.6.0 Message refused: {exc.code}"
        except Exception:
            # A bug of ours must not lose a request: defer it so the sender retries (and
            # an operator sees the traceback), never accept what we did not record.
            log.exception("smtp handler failed", extra={"key": mail.key[:80]})
            return "451 4.3.0 Temporary failure: please try again later"
        # What a mail changed is logged already, a line per change (pipeline.py) or per bounced
        # address; a mail that changed nothing gets a line of its own saying why (auto-reply,
        # not-spam report, nothing recognised).
        level = logging.DEBUG if count else logging.INFO
        log.log(level, "smtp accepted", extra={"kind": kind, "changes": count, "peer": mail.peer})
        return "250 2.0.0 OK: recorded" if count else "250 2.0.0 OK"

    async def _dispatch(self, mail: _Mail, verified: dict[str, Target]) -> tuple[str, int]:
        report = parse.feedback_report(mail.msg)
        if report is not None:
            return "complaint", await self._complaint(mail, report)
        failures = parse.permanent_failures(mail.msg)
        if failures is not None:
            return "dsn", await self._bounces(mail, failures)
        reason = parse.auto_reply_reason(mail.msg, mail.mail_from)
        if reason is not None:
            return f"auto_reply:{reason}", 0
        messages: dict[tuple[str, str], InboundMessage] = {}
        for rcpt in mail.rcpts:
            found = self._for_recipient(mail, rcpt, verified)
            if found is not None:
                messages.setdefault((found.sender, found.contact.lower()), found)
        recorded = 0
        for message in messages.values():
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

    def _for_recipient(
        self, mail: _Mail, rcpt: str, verified: dict[str, Target]
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
        list_id = self._list_ids.get(rcpt.lower())
        targets = self._links.find_targets(
            parse.header(mail.msg, "In-Reply-To"),
            parse.header(mail.msg, "References"),
            parse.header(mail.msg, "Subject"),
        )
        if list_id is None:
            known = [t.list_id for t in targets]
            domain_lists = self._by_domain.get(domain.lower(), [])
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
        self, mail: _Mail, rcpt: str, target: Target, method: Method, intent: Intent, text: str
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
            dedupe_key=_dedupe("smtp", mail.key, target.list_id, target.address),
            received_at=datetime.now(UTC),
            evidence=evidence,
            intent=intent,
        )

    async def _complaint(self, mail: _Mail, report: parse.FeedbackReport) -> int:
        if report.feedback_type == "not-spam":
            return 0
        targets = self._links.find_targets(report.original)
        if not targets:
            # No token survived (some providers redact): Original-Rcpt-To and the list's own
            # address in the returned headers still name recipient and list (RFC 5965 3.2).
            lists = [lid for low, lid in self._list_ids.items() if low in report.original.lower()]
            targets = [Target(lists[0], rcpt) for rcpt in report.original_rcpt_to[:1] if lists]
        if not targets:
            log.warning("complaint names no recipient we know", extra={"key": mail.key[:80]})
            return 0
        done = 0
        for target in {Target(t.list_id, t.address) for t in targets}:
            message = InboundMessage(
                channel=Channel.EMAIL,
                sender=target.list_id,
                contact=target.address,
                text=f"feedback-type: {report.feedback_type}",
                method=Method.COMPLAINT,
                dedupe_key=_dedupe("arf", mail.key, target.list_id, target.address),
                received_at=datetime.now(UTC),
                evidence={
                    "message_id": mail.key,
                    "feedback_type": report.feedback_type,
                    "user_agent": report.user_agent[:200],
                    "arrival_date": report.arrival_date[:100],
                    "reporter": mail.mail_from,
                    "peer_ip": mail.peer,
                    "source": "arf",
                },
                intent=Intent(
                    IntentKind.OPT_OUT_ALL,
                    MatchKind.EXACT,
                    language=self._links.lists[target.list_id].default_language,
                    keyword="complaint",
                ),
                # Someone who reported our mail as spam gets no more mail from us, not even a
                # confirmation: it would be one more message they did not want, and mailbox
                # providers count it against the sender (RFC 6449 section 3.3, feedback loops).
                suppress_replies=True,
            )
            await self._handle(message)
            done += 1
        return done

    async def _bounces(self, mail: _Mail, failures: list[parse.FailedRecipient]) -> int:
        targets = self._links.find_targets(parse.original_headers(mail.msg), *mail.rcpts)
        for failure in failures:
            address = failure.address.lower()
            list_id = next((t.list_id for t in targets if t.address.lower() == address), None)
            await self._marks.mark_undeliverable(
                failure.address, list_id, failure.status, failure.diagnostic, mail.key
            )
            log.info(
                "address undeliverable",
                extra={"contact": mask_address(failure.address), "status": failure.status},
            )
        return len(failures)


def _parse(raw: bytes) -> Message:
    return BytesParser(policy=policy.compat32).parsebytes(raw)


def _dedupe(prefix: str, key: str, list_id: str, address: str) -> str:
    """Redelivery of one mail (same Message-ID) to one list and person is one event."""
    digest = hashlib.sha256(f"{key}\0{list_id}\0{address.lower()}".encode()).hexdigest()
    return f"{prefix}:{digest[:40]}"
