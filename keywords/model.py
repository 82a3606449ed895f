"""Core model (pure layer): the frozen values passed between keywords, consent and the gateway."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Channel(StrEnum):
    """The medium a consent applies to."""

    SMS = "sms"
    EMAIL = "email"


class SenderKind(StrEnum):
    """What a sender is: the address subscribers write to."""

    SHORT_CODE = "short_code"
    LONG_CODE = "long_code"
    EMAIL_LIST = "email_list"


class IntentKind(StrEnum):
    """What a subscriber's text asks for."""

    OPT_OUT = "opt_out"  # leave one program (``STOP FLU``)
    OPT_OUT_ALL = "opt_out_all"  # leave every program on this sender (``STOP``)
    OPT_IN = "opt_in"  # join the sender's default programs (``START``)
    JOIN = "join"  # join one named program (``FLU``)
    CONFIRM = "confirm"  # confirm a pending double opt-in (``YES``)
    # A double opt-in confirm link (``POST /c/{token}``): confirms the pending program it was
    # issued for and nothing else. A link outlives the sign-up it was mailed for, so it must
    # never opt anyone in or ask again from any other state.
    CONFIRM_LINK = "confirm_link"
    HELP = "help"
    UNKNOWN = "unknown"
    # An answer to a keep offer (``1``): rejoin the programs it picks from the offer that a
    # widened opt-out's confirmation made (keywords/consent.py, "revoke-all"). ``classify``
    # never returns it: only ``decide`` reads a text of numbers so, and only while an offer
    # is open; without one such a text stays UNKNOWN.
    KEEP = "keep"


class MatchKind(StrEnum):
    """How a text matched a keyword: auditors and reviewers see this."""

    EXACT = "exact"  # the whole normalized text is the keyword
    LEADING_WORD = "leading_word"  # the first word is the keyword (``STOP please``)
    PHRASE = "phrase"  # plain-language revocation (``please stop texting me``)
    NONE = "none"


class ConsentState(StrEnum):
    """Consent of one contact for one program on one channel."""

    NONE = "none"  # never consented: sending is refused
    PENDING = "pending"  # double opt-in requested, not yet confirmed: refused
    OPTED_IN = "opted_in"  # the only state that allows a send
    OPTED_OUT = "opted_out"


class Action(StrEnum):
    """What a ledger event records."""

    OPT_IN = "opt_in"
    OPT_OUT = "opt_out"
    PENDING = "pending"


class ReplyKind(StrEnum):
    """The reply templates a sender defines, per language."""

    HELP = "help"
    OPT_IN = "opt_in"  # confirmation of an opt-in (START, JOIN, CONFIRM)
    OPT_OUT = "opt_out"  # the one confirmation of an opt-out
    PENDING = "pending"  # "Reply YES to confirm" for double opt-in programs
    ALREADY_OPTED_IN = "already_opted_in"
    # Not a reply of its own: one line per program offered, added to the opt-out confirmation
    # of a widened opt-out ("Reply 1 to keep Acme Health Reminders.", 47 CFR 64.1200(a)(11)).
    KEEP_OFFER = "keep_offer"


@dataclass(frozen=True, slots=True)
class Intent:
    """The classification of one text sent to one sender."""

    kind: IntentKind
    match: MatchKind
    language: str = "en"  # language of the matched keyword: replies use it
    program: str | None = None  # for OPT_OUT and JOIN: the program named
    keyword: str | None = None  # the catalog keyword that matched, normalized
    needs_review: bool = False  # a leading-word or phrase match: a human should look
    # For a text of numbers only (``1``, ``1 2``): the numbers, in order. They mean something
    # only as the answer to an open keep offer (IntentKind.KEEP); the kind stays UNKNOWN.
    choices: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Transition:
    """One program's consent change inside a decision."""

    program: str
    old: ConsentState
    new: ConsentState
    action: Action


@dataclass(frozen=True, slots=True)
class Reply:
    """A rendered reply to send back on the channel the text came from."""

    kind: ReplyKind
    language: str
    text: str
    program: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """What one inbound text does: the consent transitions and the replies to send."""

    intent: Intent
    transitions: tuple[Transition, ...] = field(default=())
    replies: tuple[Reply, ...] = field(default=())
    # An opt-out of one program that revoke-all made an opt-out of every program of the
    # sender (47 CFR 64.1200(a)(10)); ``intent.program`` is the program it named.
    widened: bool = False
    # The programs the confirmation offers to keep, in the order of their numbers ("Reply 1
    # to keep ..."): the offer the writer records, open until answered or expired.
    offer: tuple[str, ...] = ()
