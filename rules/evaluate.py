"""Evaluation (pure layer): allowed, refused, or deferred to the first instant every rule allows.

Every rule that reaches a send (its jurisdiction covers the person, its channels and
categories the send, and it is in force on the local date) becomes *constraints*: its hours
once per zone the person may be in, each cap once per zone. A constraint answers one
question: the first instant at or after ``t`` that it allows. The answer to a send is the
smallest ``t`` every constraint allows, found by moving ``t`` forward to whatever the next
constraint asks for until a full pass moves it no more. Every step goes forward and each is
an opening of some constraint, so it ends; a search past ``HORIZON`` refuses.

Refusals that waiting cannot cure come first: a category the channel or place cannot carry,
a consent too weak or lapsed, message content outside the conditions. A send deferred past
the lapse of its consent is refused too.

Speed: the batch gate asks the same question (one ``at``, one category) for every recipient,
and the answer depends only on where the person is. ``CompiledRules.for_batch`` returns a
``Batch`` whose ``answers`` mapping is keyed by location key (``rules.location.sms_key``),
filled on first use: after the first recipient of an area code, each costs one dict lookup.
Caps depend on each person's history, so ``Batch.check`` takes the slow path only for people
with earlier sends where a capped rule applies.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

from rules.consent import consent_refusal, expires_at
from rules.holidays import HolidayCalendar
from rules.location import Location, locate
from rules.model import (
    BASIS_LEVEL,
    NO_HISTORY,
    Answer,
    Cap,
    Category,
    Channel,
    Consent,
    ConsentLevel,
    History,
    MessageFacts,
    Period,
    Rule,
    RuleSet,
    Verdict,
    Window,
)

__all__ = ["HORIZON", "Batch", "CompiledRules", "evaluate"]

HORIZON = timedelta(days=400)
_MAX_STEPS = 10_000
_DAY = timedelta(days=1)
_ROLLING = timedelta(hours=24)
_MICROS_PER_MINUTE = 60_000_000


@cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _wall(day: date, minute: int, zone: ZoneInfo) -> list[datetime]:
    """The UTC instants at which ``zone`` reads ``minute`` past midnight on ``day``, soonest
    first: two in a repeated hour, and for a skipped one both readings of the clock."""
    hour, minute = divmod(minute, 60)
    local = datetime.combine(day, time(hour, minute), zone)
    return sorted({local.replace(fold=f).astimezone(UTC) for f in (0, 1)})


def _first_after(candidates: Iterable[datetime], t: datetime) -> datetime | None:
    return next((c for c in candidates if c > t), None)


class _Hours:
    """A rule's hours read in one zone."""

    __slots__ = ("closed", "days", "rule", "zone", "zone_name")

    def __init__(
        self, rule: Rule, windows: tuple[Window | None, ...], zone: str, closed: HolidayCalendar
    ) -> None:
        self.rule = rule
        self.days = windows
        self.zone_name = zone
        self.zone = _zone(zone)
        self.closed = closed

    def _window_on(self, day: date) -> Window | None:
        if day in self.closed:
            return None
        return self.days[day.weekday()]

    def next_allowed(self, t: datetime) -> datetime | None:
        local = t.astimezone(self.zone)
        today = local.date()
        if not self.rule.in_force(today):
            return t
        window = self._window_on(today)
        micros = ((local.hour * 60 + local.minute) * 60 + local.second) * 1_000_000
        micros += local.microsecond
        if window is not None and (
            window.start * _MICROS_PER_MINUTE <= micros < window.end * _MICROS_PER_MINUTE
        ):
            return t
        for offset in range(16):  # a week, plus a week of holidays at most
            day = today + offset * _DAY
            if offset and not self.rule.in_force(day):
                return _first_after(_wall(day, 0, self.zone), t)  # lapsed: free from midnight
            window = self._window_on(day)
            if window is not None:
                found = _first_after(_wall(day, window.start, self.zone), t)
                if found is not None:
                    return found
        return None

    def why(self, t: datetime) -> str:
        local = t.astimezone(self.zone)
        window = self._window_on(local.date())
        day = local.strftime("%a %Y-%m-%d %H:%M")
        if window is None:
            shut = "a holiday" if local.date() in self.closed else "a closed day"
            return f"{day} {self.zone_name} is {shut}"
        return f"{day} {self.zone_name} is outside {window}"


class _Cap:
    """One cap of a rule, counted in one zone's calendar (rolling caps need none)."""

    __slots__ = ("cap", "rule", "times", "zone", "zone_name")

    def __init__(self, rule: Rule, cap: Cap, zone: str, times: list[datetime]) -> None:
        self.rule = rule
        self.cap = cap
        self.zone_name = zone
        self.zone = _zone(zone)
        self.times = times  # sorted, UTC

    def next_allowed(self, t: datetime) -> datetime | None:
        today = t.astimezone(self.zone).date()
        if not self.rule.in_force(today):
            return t
        count, times = self.cap.count, self.times
        if self.cap.period is Period.ROLLING_24H:
            first = bisect_right(times, t - _ROLLING)
            if len(times) - first < count:
                return t
            return times[len(times) - count] + _ROLLING  # when the oldest of them ages out
        if self.cap.period is Period.CALENDAR_DAY:
            start, end = today, today + _DAY
        else:
            start = today - today.weekday() * _DAY
            end = start + 7 * _DAY
        lower = _wall(start, 0, self.zone)[0]
        upper = _wall(end, 0, self.zone)[0]
        if bisect_left(times, upper) - bisect_left(times, lower) < count:
            return t
        return upper

    def why(self, t: datetime) -> str:
        return f"cap of {self.cap} reached"


_Constraint = _Hours | _Cap


def _first_allowed(
    constraints: list[_Constraint], at: datetime
) -> tuple[datetime | None, _Constraint | None]:
    """The first instant at or after ``at`` every constraint allows, and the constraint that
    moved ``at`` first (or blocked the search)."""
    t, first, limit = at, None, at + HORIZON
    for _ in range(_MAX_STEPS):
        moved = False
        for constraint in constraints:
            found = constraint.next_allowed(t)
            if found is None:
                return None, constraint
            if found > t:
                first = first or constraint
                t, moved = found, True
                if t > limit:
                    return None, constraint
        if not moved:
            return t, first
    return None, first


def _label(rule: Rule) -> str:
    return f"{rule.id} ({rule.citation})"


class CompiledRules:
    """A RuleSet ready to answer: rules indexed by category and channel, calendars built.

    ``default_zone`` and ``default_country`` place email recipients with no record (the
    sender's own zone); a batch may name another zone.
    """

    def __init__(
        self, rules: RuleSet, *, default_zone: str = "America/New_York", default_country: str = "US"
    ) -> None:
        self.rules = rules
        self.default_zone = default_zone
        self.default_country = default_country
        calendars = {
            frozenset(r.closed_on): HolidayCalendar(rules.holidays[n] for n in sorted(r.closed_on))
            for r in rules.rules
        }
        self._closed = {r.id: calendars[frozenset(r.closed_on)] for r in rules.rules}
        self._by_kind: dict[tuple[Category, Channel], tuple[Rule, ...]] = {
            (category, channel): tuple(
                r for r in rules.rules if category in r.categories and channel in r.channels
            )
            for category in Category
            for channel in Channel
        }
        self._locations: dict[tuple[str, str], Location] = {}

    def location(self, key: str, default_zone: str | None = None) -> Location:
        """The ``Location`` behind a location key (cached); ``ValueError`` for a bad key."""
        zone = default_zone or self.default_zone
        found = self._locations.get((key, zone))
        if found is None:
            found = locate(key, default_zone=zone, default_country=self.default_country)
            self._locations[(key, zone)] = found
        return found

    def applicable(self, location: Location, category: Category, channel: Channel) -> list[Rule]:
        """The rules that reach a send of ``category`` on ``channel`` to ``location``."""
        return [
            r
            for r in self._by_kind[(category, channel)]
            if location.within(r.jurisdiction, presume_by_area_code=r.presume_by_area_code)
        ]

    def evaluate(
        self,
        location: Location,
        at: datetime,
        category: Category,
        channel: Channel,
        consent: Consent | None,
        history: History = NO_HISTORY,
        message: MessageFacts | None = None,
    ) -> Answer:
        """The answer for one send; ``at`` must be aware. See the module docstring."""
        t = _utc(at)
        refusal = consent_refusal(consent, category, channel, t, self.rules)
        if refusal is not None:
            return Answer(Verdict.REFUSED, refusal, None)
        answer = self._place(location, t, category, channel, history, message)
        return self._within_consent(answer, consent)

    def _within_consent(self, answer: Answer, consent: Consent | None) -> Answer:
        if answer.not_before is None or consent is None:
            return answer
        lapse = expires_at(consent, self.rules.durations)
        if lapse is not None and lapse <= answer.not_before:
            return Answer(
                Verdict.REFUSED,
                f"{consent.basis} consent lapses at {lapse.isoformat()}, before the first "
                f"allowed instant {answer.not_before.isoformat()} ({answer.reason})",
                None,
            )
        return answer

    def _place(
        self,
        location: Location,
        t: datetime,
        category: Category,
        channel: Channel,
        history: History,
        message: MessageFacts | None,
    ) -> Answer:
        """Everything but the person's consent: category, content, hours, caps."""
        policy = self.rules.categories[category]
        if channel not in policy.consent:
            return Answer(Verdict.REFUSED, f"{category} cannot be sent by {channel}", None)
        if policy.jurisdictions is not None and not any(
            location.within(j, presume_by_area_code=False) for j in policy.jurisdictions
        ):
            places = ", ".join(sorted(policy.jurisdictions))
            return Answer(Verdict.REFUSED, f"{category} is for {places} only", None)
        rules = self.applicable(location, category, channel)
        for rule in rules:
            problem = _content_problem(rule, message)
            if problem is not None:
                return Answer(Verdict.REFUSED, f"{_label(rule)}: {problem}", None)
        constraints = self._constraints(rules, location, channel, history)
        found, blocker = _first_allowed(constraints, t)
        if found is None:
            why = f": {_label(blocker.rule)}" if blocker is not None else ""
            days = HORIZON.days
            return Answer(Verdict.REFUSED, f"no instant in {days} days meets every rule{why}", None)
        if found == t:
            names = ", ".join(r.id for r in rules) or "none apply"
            return Answer(Verdict.ALLOWED, f"within every rule ({names})", t)
        reason = f"{_label(blocker.rule)}: {blocker.why(t)}" if blocker else "deferred"
        return Answer(Verdict.DEFERRED, reason, found)

    def _constraints(
        self, rules: list[Rule], location: Location, channel: Channel, history: History
    ) -> list[_Constraint]:
        found: list[_Constraint] = []
        for rule in rules:
            if rule.windows is not None:
                closed = self._closed[rule.id]
                found.extend(_Hours(rule, rule.windows, z, closed) for z in location.zones)
            for cap in rule.caps:
                times = sorted(
                    _utc(s.at)
                    for s in history.of(cap.scope)
                    if s.category in rule.categories
                    and (cap.across_channels or s.channel is channel)
                )
                if len(times) < cap.count:
                    continue  # cannot be full: no constraint
                zones = location.zones[:1] if cap.period is Period.ROLLING_24H else location.zones
                found.extend(_Cap(rule, cap, z, times) for z in zones)
        return found

    def capped(self, location: Location, category: Category, channel: Channel) -> bool:
        """Whether any rule reaching such a send has a cap (history matters)."""
        return any(r.caps for r in self.applicable(location, category, channel))

    def for_batch(
        self,
        at: datetime,
        category: Category,
        channel: Channel,
        *,
        message: MessageFacts | None = None,
        default_zone: str | None = None,
    ) -> Batch:
        """A per-batch memo: one ``at``, category, channel and message for many recipients."""
        return Batch(self, _utc(at), category, channel, message, default_zone)


class _Answers(dict[str, Answer]):
    """Location key -> Answer, computed on first use (``dict.__missing__``)."""

    __slots__ = ("batch",)

    def __init__(self, batch: Batch) -> None:
        super().__init__()
        self.batch = batch

    def __missing__(self, key: str) -> Answer:
        answer = self.batch.place(key)
        self[key] = answer
        return answer


class Batch:
    """One batch's answers by location key; ``answers[key]`` is the whole per-recipient cost
    for people without earlier sends under a cap, and ``check`` adds their consent."""

    __slots__ = (
        "_lasting",
        "_none_needed",
        "answers",
        "at",
        "capped",
        "category",
        "channel",
        "compiled",
        "message",
        "zone",
    )

    def __init__(
        self,
        compiled: CompiledRules,
        at: datetime,
        category: Category,
        channel: Channel,
        message: MessageFacts | None,
        zone: str | None,
    ) -> None:
        self.compiled = compiled
        self.at = at
        self.category = category
        self.channel = channel
        self.message = message
        self.zone = zone
        self.answers: Mapping[str, Answer] = _Answers(self)
        self.capped: set[str] = set()  # keys whose rules have caps
        # The fast path of ``check``: bases strong enough for this category and channel that
        # never lapse, and whether no consent at all is needed.
        rules = compiled.rules
        level = rules.categories[category].consent.get(channel)
        self._none_needed = level is ConsentLevel.NONE
        self._lasting = frozenset(
            basis
            for basis, strength in BASIS_LEVEL.items()
            if level is not None
            and strength >= level
            and (basis not in rules.durations or rules.durations[basis].months is None)
        )

    def place(self, key: str) -> Answer:
        """The answer for a location key, ignoring consent and history (fills ``answers``)."""
        try:
            location = self.compiled.location(key, self.zone)
        except ValueError as exc:
            return Answer(Verdict.REFUSED, f"unknown location: {exc}", None)
        if self.compiled.capped(location, self.category, self.channel):
            self.capped.add(key)
        return self.compiled._place(
            location, self.at, self.category, self.channel, NO_HISTORY, self.message
        )

    def check(self, key: str, consent: Consent | None, history: History = NO_HISTORY) -> Answer:
        """The full answer for one recipient: consent, then place, then caps if any apply."""
        if (consent is not None and consent.basis in self._lasting) or (
            consent is None and self._none_needed
        ):
            answer = self.answers[key]
            if history is NO_HISTORY or key not in self.capped:
                return answer
        compiled = self.compiled
        refusal = consent_refusal(consent, self.category, self.channel, self.at, compiled.rules)
        if refusal is not None:
            return Answer(Verdict.REFUSED, refusal, None)
        answer = self.answers[key]
        if history and key in self.capped and answer.not_before is not None:
            location = compiled.location(key, self.zone)
            answer = compiled._place(
                location, self.at, self.category, self.channel, history, self.message
            )
        return compiled._within_consent(answer, consent)


def evaluate(
    rules: CompiledRules,
    location: Location,
    at: datetime,
    category: Category,
    channel: Channel,
    consent: Consent | None,
    history: History = NO_HISTORY,
    message: MessageFacts | None = None,
) -> Answer:
    """``rules.evaluate(...)`` as a function."""
    return rules.evaluate(location, at, category, channel, consent, history, message)


def _content_problem(rule: Rule, message: MessageFacts | None) -> str | None:
    conditions = rule.conditions
    if conditions is None:
        return None
    if message is None:
        return "the message's facts are needed (length, free, provider named, STOP)"
    if conditions.max_chars is not None and message.chars > conditions.max_chars:
        return f"{message.chars} characters, more than {conditions.max_chars}"
    if conditions.free_to_recipient and not message.free_to_recipient:
        return "must be free to the recipient"
    if conditions.names_provider and not message.names_provider:
        return "must name the provider"
    if conditions.stop_instructions and not message.stop_instructions:
        return "must say how to opt out (reply STOP)"
    return None


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("rules need aware datetimes")
    return moment.astimezone(UTC)
