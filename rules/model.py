"""Rule model (pure layer): the frozen values the loader builds and the evaluation reads.

Times of day are minutes after local midnight; a window is half-open, ``[start, end)``, so a
window "08:00-21:00" allows 20:59:59 and refuses 21:00:00. The federal rule forbids calls
"before 8 a.m. or after 9 p.m." (47 CFR 64.1200(c)(1)); treating 21:00:00 itself as outside
costs one second and removes the question. Days are numbered as ``date.weekday()``: Monday 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import IntEnum, StrEnum

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MINUTES_PER_DAY = 24 * 60


class Category(StrEnum):
    """What a send is, which decides the consent it needs and the rules that apply to it."""

    MARKETING = "marketing"  # encourages a purchase: telemarketing / a commercial message
    INFORMATIONAL = "informational"  # news the person signed up for, no sales content
    HEALTHCARE_EXEMPT = "healthcare_exempt"  # within the FCC healthcare exemption's terms
    TRANSACTIONAL = "transactional"  # asked for by the person, about that request only


class Channel(StrEnum):
    """The medium of a send (the same values as ``keywords.model.Channel``)."""

    SMS = "sms"
    EMAIL = "email"


class ConsentLevel(IntEnum):
    """How strong a consent is; a category needs at least a given level on a channel."""

    NONE = 0
    IMPLIED = 1  # inferred from a relationship (CASL s.10(9)-(10), PECR reg 22(3))
    EXPRESS = 2  # the person said yes (prior express consent)
    EXPRESS_WRITTEN = 3  # a signed written agreement (47 CFR 64.1200(f)(9))


class Basis(StrEnum):
    """The recorded ground of a consent; each maps to a level and may expire."""

    EXPRESS_WRITTEN = "express_written"
    EXPRESS = "express"
    IMPLIED_PURCHASE = "implied_purchase"  # a purchase, lease or contract (CASL s.10(10)(a)-(d))
    IMPLIED_INQUIRY = "implied_inquiry"  # an inquiry or application (CASL s.10(10)(e))
    SOFT_OPT_IN = "soft_opt_in"  # contact details given in a sale (PECR reg 22(3))


BASIS_LEVEL: Mapping[Basis, ConsentLevel] = {
    Basis.EXPRESS_WRITTEN: ConsentLevel.EXPRESS_WRITTEN,
    Basis.EXPRESS: ConsentLevel.EXPRESS,
    Basis.IMPLIED_PURCHASE: ConsentLevel.IMPLIED,
    Basis.IMPLIED_INQUIRY: ConsentLevel.IMPLIED,
    Basis.SOFT_OPT_IN: ConsentLevel.IMPLIED,
}


class Period(StrEnum):
    """How a cap's sends are counted."""

    ROLLING_24H = "rolling_24h"  # the 24 hours before the send
    CALENDAR_DAY = "calendar_day"  # the recipient's local calendar day
    CALENDAR_WEEK = "calendar_week"  # the recipient's local ISO week, Monday to Sunday


class Scope(StrEnum):
    """Which earlier sends to the same person a cap counts."""

    SUBJECT = "subject"  # about the same subject or issue
    PROGRAM = "program"  # in the same program
    SENDER = "sender"  # from the same sender (brand, provider)
    CHANNEL = "channel"  # anything through this gateway on the channel


# Each scope counts everything the narrower ones count (a sender's sends include all its
# programs' sends), so a cap over a wider scope with the same count is at least as strict.
SCOPE_WIDTH: Mapping[Scope, int] = {
    Scope.SUBJECT: 0,
    Scope.PROGRAM: 1,
    Scope.SENDER: 2,
    Scope.CHANNEL: 3,
}


class Verdict(StrEnum):
    """The gate's answer about time and kind (consent state is answered by the ledger)."""

    ALLOWED = "allowed"
    REFUSED = "refused"  # will not become allowed by waiting
    DEFERRED = "deferred"  # allowed from ``not_before``


@dataclass(frozen=True, slots=True)
class Window:
    """One day's allowed local time, ``[start, end)`` in minutes after midnight."""

    start: int
    end: int

    def covers(self, other: Window) -> bool:
        """Whether every minute ``other`` allows is also allowed here."""
        return self.start <= other.start and other.end <= self.end

    def __str__(self) -> str:
        return f"{_clock(self.start)}-{_clock(self.end)}"


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True, slots=True)
class Cap:
    """At most ``count`` sends per ``period`` within ``scope``."""

    count: int
    period: Period
    scope: Scope
    across_channels: bool  # sends on the other channels count too

    def __str__(self) -> str:
        where = "all channels" if self.across_channels else "this channel"
        return f"{self.count} per {self.period.value} ({self.scope.value}, {where})"


@dataclass(frozen=True, slots=True)
class Source:
    """Where a rule comes from: citation, URL and when (or whether) it was checked."""

    citation: str
    url: str
    checked: str  # "2026-12-02: ..." or "unverified: ..."


@dataclass(frozen=True, slots=True)
class Conditions:
    """Content conditions a send must meet (the FCC healthcare exemption's)."""

    max_chars: int | None = None
    free_to_recipient: bool = False
    names_provider: bool = False
    stop_instructions: bool = False


@dataclass(frozen=True, slots=True)
class Rule:
    """One shipped or operator rule: windows, caps and conditions for some sends somewhere."""

    id: str
    title: str
    jurisdiction: str  # "US" (a country, ISO 3166-1) or "US-FL" (a state, ISO 3166-2)
    presume_by_area_code: bool  # an area code of the state presumes the person is there
    channels: frozenset[Channel]
    categories: frozenset[Category]
    windows: tuple[Window | None, ...] | None  # seven days from Monday; None: no hours rule
    closed_on: frozenset[str]  # holiday calendars whose days are closed
    caps: tuple[Cap, ...]
    conditions: Conditions | None
    effective_from: date | None  # first day in force (recipient's local date)
    effective_until: date | None  # last day in force
    sources: tuple[Source, ...]
    file: str  # the file that defined it, for messages

    def in_force(self, day: date) -> bool:
        """Whether the rule applies on local date ``day``."""
        if self.effective_from is not None and day < self.effective_from:
            return False
        return self.effective_until is None or day <= self.effective_until

    @property
    def citation(self) -> str:
        return "; ".join(s.citation for s in self.sources)


@dataclass(frozen=True, slots=True)
class CategoryPolicy:
    """Where a category may be used and the consent it needs on each channel."""

    category: Category
    consent: Mapping[Channel, ConsentLevel]  # the channels it may use, with their level
    jurisdictions: frozenset[str] | None  # None: anywhere; else only there ("US")
    file: str


@dataclass(frozen=True, slots=True)
class Duration:
    """How long a consent basis lasts; ``months`` None means it does not expire."""

    basis: Basis
    months: int | None
    file: str


@dataclass(frozen=True, slots=True)
class Consent:
    """A person's recorded consent: its basis and when it was given (aware datetime)."""

    basis: Basis
    since: datetime


@dataclass(frozen=True, slots=True)
class Sent:
    """An earlier send to the same person, for caps (aware datetime)."""

    at: datetime
    channel: Channel
    category: Category


@dataclass(frozen=True, slots=True)
class History:
    """A person's earlier sends per cap scope; each sequence holds only that scope's sends.

    The caller picks them: ``subject`` the sends about this send's subject, ``program`` this
    program's, ``sender`` this sender's, ``channel`` every send through the gateway. Empty
    means none were made, so leave nothing out.
    """

    subject: tuple[Sent, ...] = ()
    program: tuple[Sent, ...] = ()
    sender: tuple[Sent, ...] = ()
    channel: tuple[Sent, ...] = ()

    def of(self, scope: Scope) -> tuple[Sent, ...]:
        return getattr(self, scope.value)  # type: ignore[no-any-return]

    def __bool__(self) -> bool:
        return bool(self.subject or self.program or self.sender or self.channel)


NO_HISTORY = History()


@dataclass(frozen=True, slots=True)
class MessageFacts:
    """What the evaluation needs to know about a message's content."""

    chars: int
    free_to_recipient: bool
    names_provider: bool
    stop_instructions: bool


@dataclass(frozen=True, slots=True)
class ProgramPolicy:
    """What a program's sign-up allows: its categories and the consent level it collects."""

    name: str
    categories: frozenset[Category]
    consent: ConsentLevel


@dataclass(frozen=True, slots=True)
class Answer:
    """The rules' answer for one send: ``not_before`` is set unless refused."""

    verdict: Verdict
    reason: str
    not_before: datetime | None


@dataclass(frozen=True)
class RuleSet:
    """Everything loaded: rules, category policies, consent durations, holiday calendars."""

    rules: tuple[Rule, ...]
    categories: Mapping[Category, CategoryPolicy]
    durations: Mapping[Basis, Duration]
    holidays: Mapping[str, HolidayDefinition]
    files: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class HolidayDay:
    """One holiday: a fixed date or the nth weekday of a month, with an offset in days."""

    name: str
    month: int
    day: int | None = None  # fixed date
    weekday: int | None = None  # or the nth (1-5, -1 the last) such weekday of the month
    nth: int | None = None
    offset_days: int = 0  # e.g. +1: the Tuesday after the first Monday
    from_year: int | None = None
    until_year: int | None = None
    years: str = "all"  # "all", "even", "odd"


@dataclass(frozen=True, slots=True)
class HolidayDefinition:
    """A named holiday calendar as the rule data defines it."""

    name: str
    title: str
    observed: str  # "none", "nearest_weekday" (Sat -> Fri, Sun -> Mon), "next_monday"
    days: tuple[HolidayDay, ...]
    extra: frozenset[date]
    file: str
