"""Properties of the evaluation over random times, places, histories and added rules.

1. ``not_before`` is never before ``at``; an allowed answer's is ``at`` itself.
2. Evaluated again at its ``not_before``, a deferred send is allowed there.
3. No added rule (an operator's, always stricter) turns a refusal or a deferral into an
   allow, or moves ``not_before`` earlier; no replacement the loader accepts as no weaker
   does either.
4. The batch form answers as ``evaluate`` does.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rules_cases import compiled, extra_rule, shipped, with_rules

from rules.evaluate import CompiledRules
from rules.model import (
    Answer,
    Basis,
    Cap,
    Category,
    Channel,
    Consent,
    History,
    MessageFacts,
    Period,
    Rule,
    Scope,
    Sent,
    Verdict,
    Window,
)
from rules.strictness import weaker_rule

KEYS = [
    "+1212", "+1305", "+1850", "+1405", "+1410", "+1512", "+1915", "+1203", "+1401",
    "+1206", "+1812", "+1423", "+1907", "+1808", "+1800", "+1416", "+44",
    "+1305|US-NY|", "+1850||America/Chicago", "+1512|US-RI|", "@", "@||Europe/Paris",
]  # fmt: skip
START = datetime(2026, 1, 1, tzinfo=UTC)

instants = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
)
keys = st.sampled_from(KEYS)
categories = st.sampled_from(list(Category))
channels = st.sampled_from(list(Channel))
consents = st.one_of(
    st.none(),
    st.builds(
        Consent,
        st.sampled_from(list(Basis)),
        st.datetimes(
            min_value=datetime(2024, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
        ),
    ),
)
messages = st.one_of(
    st.none(),
    st.builds(MessageFacts, st.integers(1, 200), st.booleans(), st.booleans(), st.booleans()),
)


@st.composite
def histories(draw: st.DrawFn, at: datetime) -> History:
    def scope() -> tuple[Sent, ...]:
        ages = draw(st.lists(st.integers(0, 8 * 24 * 60), max_size=6))
        return tuple(
            Sent(at - timedelta(minutes=a), draw(channels), draw(categories)) for a in ages
        )

    return History(subject=scope(), program=scope(), sender=scope(), channel=scope())


@st.composite
def windows(draw: st.DrawFn) -> tuple[Window | None, ...]:
    days: list[Window | None] = []
    for _ in range(7):
        if draw(st.integers(0, 5)) == 0:
            days.append(None)
            continue
        start = draw(st.integers(0, 47)) * 30
        end = draw(st.integers(start // 30 + 1, 48)) * 30
        days.append(Window(start, end))
    if all(d is None for d in days):
        days[0] = Window(9 * 60, 17 * 60)
    return tuple(days)


@st.composite
def added_rules(draw: st.DrawFn) -> Rule:
    hours = draw(st.one_of(st.none(), windows()))
    caps = tuple(
        Cap(
            draw(st.integers(1, 4)), draw(st.sampled_from(list(Period))), scope, draw(st.booleans())
        )
        for scope in draw(st.sets(st.sampled_from(list(Scope)), max_size=2))
        if scope is not Scope.CHANNEL
    )
    if hours is None and not caps:
        hours = draw(windows())
    return extra_rule(
        hours,
        caps=caps,
        channels=frozenset(draw(st.sets(channels, min_size=1))),
        categories=frozenset(draw(st.sets(categories, min_size=1))),
        jurisdiction=draw(st.sampled_from(["US", "US-FL", "US-TX", "CA", "GB"])),
    )


@st.composite
def cases(
    draw: st.DrawFn,
) -> tuple[str, datetime, Category, Channel, Consent | None, History, MessageFacts | None]:
    at = draw(instants)
    return (
        draw(keys),
        at,
        draw(categories),
        draw(channels),
        draw(consents),
        draw(histories(at)),
        draw(messages),
    )


Case = tuple[str, datetime, Category, Channel, "Consent | None", History, "MessageFacts | None"]
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run(rules: CompiledRules, case: Case, at: datetime | None = None) -> Answer:
    key, when, category, channel, consent, history, message = case
    return rules.evaluate(
        rules.location(key), at or when, category, channel, consent, history, message
    )


@FAST
@given(cases())
def test_not_before_is_never_before_at(case: Case) -> None:
    """Property 1."""
    answer = run(compiled(), case)
    at = case[1]
    if answer.verdict is Verdict.REFUSED:
        assert answer.not_before is None
    else:
        assert answer.not_before is not None
        assert answer.not_before >= at
        assert (answer.verdict is Verdict.ALLOWED) == (answer.not_before == at)


@FAST
@given(cases())
def test_not_before_is_allowed_by_every_rule(case: Case) -> None:
    """Property 2: asked again at ``not_before``, with the same history, it is allowed."""
    rules = compiled()
    answer = run(rules, case)
    if answer.not_before is not None:
        again = run(rules, case, at=answer.not_before)
        assert Verdict.ALLOWED == again.verdict, (answer, again)
        assert answer.not_before == again.not_before


def no_looser(base: Answer, stricter: Answer) -> None:
    if base.verdict is Verdict.REFUSED:
        assert Verdict.REFUSED == stricter.verdict, (base, stricter)
    if base.verdict is Verdict.DEFERRED:
        assert Verdict.ALLOWED != stricter.verdict, (base, stricter)
    if base.not_before is not None and stricter.not_before is not None:
        assert stricter.not_before >= base.not_before, (base, stricter)


@FAST
@given(cases(), st.lists(added_rules(), min_size=1, max_size=3))
def test_added_rules_never_loosen(case: Case, extra: list[Rule]) -> None:
    """Property 3a: any added rule narrows or leaves the answer."""
    named = [dataclasses.replace(r, id=f"test_extra_{i}") for i, r in enumerate(extra)]
    no_looser(run(compiled(), case), run(with_rules(*named), case))


@st.composite
def replacements(draw: st.DrawFn) -> Rule:
    """A random narrowing of a shipped rule: inside its windows, a cap no higher."""
    base = draw(st.sampled_from([r for r in shipped().rules if r.windows is not None or r.caps]))
    days: list[Window | None] | None = None
    if base.windows is not None:
        days = []
        for window in base.windows:
            if window is None or draw(st.integers(0, 6)) == 0:
                days.append(None)
                continue
            start = draw(st.integers(window.start, window.end - 1))
            days.append(Window(start, draw(st.integers(start + 1, window.end))))
        if all(d is None for d in days):
            days = list(base.windows)
    caps = tuple(
        Cap(
            draw(st.integers(1, c.count)),
            c.period,
            c.scope,
            c.across_channels or draw(st.booleans()),
        )
        for c in base.caps
    )
    hours = None if days is None else tuple(days)
    return dataclasses.replace(base, windows=hours, caps=caps)


@FAST
@given(cases(), replacements())
def test_no_weaker_replacements_never_loosen(case: Case, replacement: Rule) -> None:
    """Property 3b: a replacement ``weaker_rule`` accepts is never looser in effect."""
    shipped_rule = next(r for r in shipped().rules if r.id == replacement.id)
    assert weaker_rule(replacement, shipped_rule) is None
    no_looser(run(compiled(), case), run(with_rules(replacement, replace=True), case))


@FAST
@given(cases())
def test_batch_check_equals_evaluate(case: Case) -> None:
    """The memoised batch path gives the same answer as a fresh evaluation."""
    key, at, category, channel, consent, history, message = case
    rules = compiled()
    batch = rules.for_batch(at, category, channel, message=message)
    assert run(rules, case) == batch.check(key, consent, history)
