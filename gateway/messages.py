"""Messages between layers (I/O layer): what an edge hands the pipeline and what it gets back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from keywords.model import Channel, Decision, Intent, IntentKind, MatchKind


class Method(StrEnum):
    """How a consent change reached us (docs/DESIGN.md, invariant 4)."""

    SMS_KEYWORD = "sms_keyword"
    WEB_FORM = "web_form"
    ONE_CLICK = "one_click"
    MAILTO = "mailto"
    EMAIL_REPLY = "email_reply"
    PREFERENCE_PAGE = "preference_page"
    VERBAL = "verbal"
    WRITTEN = "written"
    API = "api"
    COMPLAINT = "complaint"
    BOUNCE = "bounce"
    ERASURE = "erasure"
    IMPORT = "import"  # brought from another system (gateway/app/consent_import.py)


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A subscriber's text or mail, as an edge received it, before any normalization.

    ``dedupe_key`` names the message for exactly-once handling (invariant 3): the edge builds
    it from the peer's own id (``smpp:<smsc>:<message_id>``, ``http:<id>``), so a redelivery
    of the same message maps to the same key.
    """

    channel: Channel
    sender: str  # the short code, long code or list the subscriber wrote to
    contact: str  # the subscriber's number or address, as received
    text: str
    method: Method
    dedupe_key: str
    received_at: datetime
    carrier_time: datetime | None = None
    evidence: Mapping[str, str] = field(default_factory=dict)
    # Set by edges whose input is not free text (one-click, forms, preference page,
    # complaints, operators): the pipeline then records this intent instead of classifying.
    intent: Intent | None = None
    # True when the peer already answered (Twilio Advanced Opt-Out sends its own STOP
    # confirmation; an erasure must not message the person): record, queue no reply.
    suppress_replies: bool = False
    # True when the text is known to lack some of what the person wrote (a long SMS some of
    # whose parts never came): what is there is still read, but never as an opt-in (README,
    # "Decisions worth knowing": an ambiguous text is never an opt-in).
    partial: bool = False
    # True when the person at ``contact`` acted from that address themselves: a click on a
    # confirm link that was mailed there. (An SMS keyword always is: it came from the number.)
    by_subject: bool = False
    # False for an opt-out that is no revocation made now: a double opt-in left unconfirmed,
    # an opt-out carried over or imported from an earlier record. Revoke-all (47 CFR
    # 64.1200(a)(10)) widens a revocation only; these keep the one program they name.
    revokes: bool = True

    @property
    def from_the_person(self) -> bool:
        """The person's own act from the address: the only consent that lifts an erasure's
        suppression (README "Data-subject rights"). Forms, operators, the API, the
        preference page and mail (whose From anyone can forge) are others' captures."""
        return self.by_subject or self.method is Method.SMS_KEYWORD

    @classmethod
    def decided(
        cls,
        *,
        channel: Channel,
        sender: str,
        contact: str,
        method: Method,
        dedupe_key: str,
        kind: IntentKind,
        program: str | None = None,
        evidence: Mapping[str, str] | None = None,
        suppress_replies: bool = False,
        by_subject: bool = False,
        revokes: bool = True,
    ) -> InboundMessage:
        """A message whose intent the edge already knows (a form, a click, an operator):
        there is no text to classify, and the intent is recorded as an exact match."""
        return cls(
            channel=channel,
            sender=sender,
            contact=contact,
            text="",
            method=method,
            dedupe_key=dedupe_key,
            received_at=datetime.now(UTC),
            evidence=evidence or {},
            intent=Intent(kind, MatchKind.EXACT, program=program),
            suppress_replies=suppress_replies,
            by_subject=by_subject,
            revokes=revokes,
        )


class OutcomeStatus(StrEnum):
    """What the pipeline did with an inbound message; every status is safe to acknowledge."""

    COMMITTED = "committed"  # recorded now
    DUPLICATE = "duplicate"  # recorded earlier: acknowledge again, change nothing


@dataclass(frozen=True, slots=True)
class Outcome:
    """The committed result of one inbound message."""

    status: OutcomeStatus
    inbound_id: int
    decision: Decision | None  # None for a duplicate: the first delivery decided
    ledger_seqs: tuple[int, ...] = ()
    outbox_ids: tuple[int, ...] = ()

    @property
    def intent(self) -> Intent | None:
        """The classified intent, when this delivery was the one that decided."""
        return None if self.decision is None else self.decision.intent


@dataclass(frozen=True, slots=True)
class SmsPartSet:
    """Parts of one concatenated SMS as the store hands them over for the pipeline.

    ``seqs``, ``codings`` and ``bodies`` describe the parts handed over (UDH removed, as
    received), in part order; a part missing from ``seqs`` never came. ``id`` names the set
    in the store, and with ``len(seqs)`` it makes the inbound event's dedupe key.
    """

    id: int
    smsc: str
    source: str
    destination: str
    ref: int
    total: int
    seqs: tuple[int, ...]
    codings: tuple[int, ...]
    bodies: tuple[bytes, ...]
    received_at: datetime  # when the newest of these parts arrived

    @property
    def missing(self) -> tuple[int, ...]:
        """The parts that were not handed over, in order."""
        present = set(self.seqs)
        return tuple(n for n in range(1, self.total + 1) if n not in present)
