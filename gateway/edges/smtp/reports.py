"""Complaints (ARF, RFC 5965) and bounces (DSN, RFC 3464) received by the SMTP edge.

A report acts only when it is tied to a message we sent (token, Message-ID, VERP, our DKIM
signature: ``provenance.py``), and then only on that message's own recipient; or when a
configured feedback loop authenticated it. Anything else is kept as an unverified report,
changes nothing, and is answered 250 by the handler like the rest (a refusal would only make
the reporter retry or bounce it back): docs/DESIGN.md, invariant 11.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from typing import Protocol

from gateway.edges.smtp import parse
from gateway.edges.smtp.mailauth import AuthResults
from gateway.edges.smtp.provenance import Provenance, Tie, normal_address, same_address
from gateway.email.links import Target, UnsubscribeLinks
from gateway.logs import mask_address
from gateway.messages import InboundMessage, Method, Outcome
from keywords.model import Channel, Intent, IntentKind, MatchKind

log = logging.getLogger(__name__)

_MAX_NAMED = 20  # addresses kept from one unverified report

Handle = Callable[[InboundMessage], Awaitable[Outcome]]


class BounceMarks(Protocol):
    """What the handler needs to record hard bounces (``gateway.store.email_marks``)."""

    async def mark_undeliverable(
        self, address: str, list_id: str | None, status: str, diagnostic: str, dsn_key: str
    ) -> None:
        """Record one permanent failure."""


class UnverifiedReports(Protocol):
    """Where reports not tied to our mail are kept (``gateway.store.email_reports``)."""

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
        """Keep one report for review (idempotent)."""


@dataclass(frozen=True, slots=True)
class Mail:
    """One received mail, parsed, with its envelope and its key."""

    msg: Message
    raw: bytes
    mail_from: str
    rcpts: tuple[str, ...]
    key: str  # Message-ID, or a digest of the content when there is none
    peer: str
    helo: str


class ReportActions:
    """What a complaint or a bounce changes, after its provenance is settled."""

    def __init__(
        self,
        handle: Handle,
        links: UnsubscribeLinks,
        marks: BounceMarks,
        provenance: Provenance,
        reports: UnverifiedReports,
        authenticate: Callable[[Mail], Awaitable[AuthResults]],
    ) -> None:
        self._handle = handle
        self._links = links
        self._marks = marks
        self._provenance = provenance
        self._reports = reports
        self._authenticate = authenticate

    async def complaint(self, mail: Mail, report: parse.FeedbackReport) -> int:
        """Act on an ARF report about our mail; keep any other for review. Returns the
        number of opt-outs recorded."""
        if report.feedback_type == "not-spam":
            return 0
        detail = {
            "feedback_type": report.feedback_type[:50],
            "user_agent": report.user_agent[:200],
            "arrival_date": report.arrival_date[:100],
        }
        ties = await self._provenance.ties(mail.rcpts, report.returned)
        evidence: dict[str, str]
        if ties:
            # A report about our mail acts on that mail's recipient alone, never on another
            # address it names (Original-Rcpt-To is the reporter's word, not ours).
            targets = [t.target for t in ties]
            evidence = {"tied_by": ",".join(sorted({t.by for t in ties}))}
        else:
            auth = await self._authenticate(mail)
            reporter = self._provenance.trusted_reporter(auth)
            list_id = self._provenance.list_named_in(report.original)
            if reporter is None or list_id is None or not report.original_rcpt_to:
                why = "untrusted reporter" if reporter is None else "names no list or recipient"
                await self._unverified(mail, "complaint", auth, report.original_rcpt_to,
                                       detail, f"not tied to our mail; {why}")  # fmt: skip
                return 0
            # A trusted feedback loop redacts our tokens at times (RFC 6449 section 3.3):
            # its Original-Rcpt-To and the list address in the returned headers name them.
            targets = [Target(list_id, report.original_rcpt_to[0])]
            evidence = {"trusted_reporter": reporter, **auth.evidence()}
        for target in targets:
            message = InboundMessage(
                channel=Channel.EMAIL,
                sender=target.list_id,
                contact=target.address,
                text=f"feedback-type: {report.feedback_type}",
                method=Method.COMPLAINT,
                dedupe_key=dedupe("arf", mail.key, target.list_id, target.address),
                received_at=datetime.now(UTC),
                evidence={
                    "message_id": mail.key,
                    **detail,
                    "reporter": mail.mail_from,
                    "peer_ip": mail.peer,
                    "source": "arf",
                    **evidence,
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
        return len(targets)

    async def bounces(self, mail: Mail, failures: list[parse.FailedRecipient]) -> int:
        """Mark the permanently failed recipients of our mail undeliverable; keep a DSN
        about anything else for review. Returns the number of addresses marked."""
        if not failures:
            return 0
        returned = parse.returned_message(mail.msg)
        ties = await self._provenance.ties(mail.rcpts, returned)
        marks: list[tuple[str, str | None, parse.FailedRecipient]] = []
        unmatched: list[parse.FailedRecipient] = []
        auth: AuthResults | None = None
        if ties:
            for failure in failures:
                tie = _tie_for(ties, failure)
                if tie is None:
                    unmatched.append(failure)
                elif not any(same_address(a, tie.target.address) for a, _, _ in marks):
                    marks.append((tie.target.address, tie.target.list_id, failure))
        else:
            auth = await self._authenticate(mail)
            if self._provenance.trusted_reporter(auth) is None:
                unmatched = failures
            else:
                marks = [(f.address, None, f) for f in failures]
        for address, list_id, failure in marks:
            await self._marks.mark_undeliverable(
                address, list_id, failure.status, failure.diagnostic, mail.key
            )
            log.info(
                "address undeliverable",
                extra={"contact": mask_address(address), "status": failure.status},
            )
        if unmatched:
            if auth is None:
                auth = await self._authenticate(mail)
            named = [a for f in unmatched for a in (f.address, f.original) if a]
            reason = (
                "not tied to our mail" if not ties else "names a recipient the mail was not for"
            )
            detail = {"statuses": " ".join(f.status for f in unmatched)[:200]}
            await self._unverified(mail, "bounce", auth, named, detail, reason)
        return len(marks)

    async def _unverified(
        self,
        mail: Mail,
        kind: str,
        auth: AuthResults,
        named: tuple[str, ...] | list[str],
        detail: dict[str, str],
        reason: str,
    ) -> None:
        """Keep a report we do not believe for review; it changes nothing."""
        addresses: list[str] = []
        for address in named:
            if address and not any(same_address(address, a) for a in addresses):
                addresses.append(_stored_address(address))
        stored = await self._reports.record_unverified(
            report_key=mail.key,
            kind=kind,
            peer_ip=mail.peer,
            helo=mail.helo,
            mail_from=mail.mail_from[:320],
            auth=auth.evidence(),
            detail=detail,
            named=addresses[:_MAX_NAMED],
            reason=reason,
        )
        log.info(
            "unverified report kept",
            extra={"kind": kind, "reason": reason, "peer": mail.peer, "new": stored,
                   "spf": auth.spf, "dmarc": auth.dmarc},
        )  # fmt: skip


def _tie_for(ties: list[Tie], failure: parse.FailedRecipient) -> Tie | None:
    """The tie a failed recipient is about: its own address (final or original), or the one
    recipient of a VERP address, whose envelope alone names the message (RFC 3464 section
    2.3.1: Final-Recipient may be a forwarding target we never wrote to)."""
    for tie in ties:
        if any(
            a and same_address(a, tie.target.address) for a in (failure.address, failure.original)
        ):
            return tie
    return next((t for t in ties if t.by == "verp"), None)


def _stored_address(address: str) -> str:
    """An address as the unverified report keeps it: normalized as contacts are, else
    lower-cased; bounded, so a report cannot make us store a megabyte of it."""
    return normal_address(address)[:320]


def dedupe(prefix: str, key: str, list_id: str, address: str) -> str:
    """Redelivery of one mail (same Message-ID) to one list and person is one event."""
    # surrogatepass: a Message-ID read from undecodable bytes holds lone surrogates.
    text = f"{key}\0{list_id}\0{address.lower()}"
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{prefix}:{digest[:40]}"
