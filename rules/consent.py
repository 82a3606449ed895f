"""Consent strength and duration (pure layer): does a basis reach a category, and until when.

Levels and durations come from the rule data (``config/rules/categories.toml`` and
``consent.toml``). A basis expires ``months`` after ``since`` at the same instant, the day
clamped to the end of a shorter month (31 August + 6 months: 28 or 29 February), which is
never later than CASL's reckoning in whole days (s.10(10): "the two-year period
immediately before the day on which the message was sent").
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from rules.model import (
    BASIS_LEVEL,
    Basis,
    Category,
    CategoryPolicy,
    Channel,
    Consent,
    ConsentLevel,
    Duration,
    ProgramPolicy,
    RuleSet,
)

__all__ = [
    "Expiring",
    "add_months",
    "check_program",
    "consent_refusal",
    "expires_at",
    "expiring_within",
    "required_level",
]

K = TypeVar("K")


def add_months(moment: datetime, months: int) -> datetime:
    """``moment`` ``months`` later, the day clamped to the target month's last day."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def expires_at(consent: Consent, durations: Mapping[Basis, Duration]) -> datetime | None:
    """When ``consent`` stops counting, or None if its basis does not expire."""
    duration = durations.get(consent.basis)
    if duration is None or duration.months is None:
        return None
    return add_months(consent.since, duration.months)


@dataclass(frozen=True, slots=True)
class Expiring(Generic[K]):
    """A consent record that lapses soon: what it is, its consent and when it lapses."""

    record: K
    consent: Consent
    expires_at: datetime


def expiring_within(
    records: Iterable[tuple[K, Consent]],
    at: datetime,
    days: int,
    durations: Mapping[Basis, Duration],
) -> list[Expiring[K]]:
    """The records whose consent lapses in ``[at, at + days)``, soonest first.

    Already lapsed records are left out: the evaluation refuses them, and a renewal
    campaign (asking for express consent) can only go to people still reachable.
    """
    end = at + timedelta(days=days)
    found = []
    for record, consent in records:
        lapse = expires_at(consent, durations)
        if lapse is not None and at <= lapse < end:
            found.append(Expiring(record, consent, lapse))
    found.sort(key=lambda e: e.expires_at)
    return found


def required_level(
    categories: Mapping[Category, CategoryPolicy], category: Category, channel: Channel
) -> ConsentLevel | None:
    """The level ``category`` needs on ``channel``; None if it may not use the channel."""
    return categories[category].consent.get(channel)


def check_program(
    program: ProgramPolicy, category: Category, channel: Channel, rules: RuleSet
) -> str | None:
    """Why ``program`` may not carry a ``category`` send on ``channel``, or None if it may.

    A program lists the categories it was set up for and the consent level its sign-up
    collects; a send needing more than the sign-up collected is refused whatever the person's
    own record says, because the sign-up wording is what the person agreed to.
    """
    if category not in program.categories:
        allowed = ", ".join(sorted(program.categories)) or "none"
        return f'program "{program.name}" does not send {category} (it sends: {allowed})'
    level = required_level(rules.categories, category, channel)
    if level is None:
        return f"{category} cannot be sent by {channel}"
    if program.consent < level:
        return (
            f"{category} by {channel} needs {level.name.lower()} consent; "
            f'program "{program.name}" collects {program.consent.name.lower()}'
        )
    return None


def consent_refusal(
    consent: Consent | None,
    category: Category,
    channel: Channel,
    at: datetime,
    rules: RuleSet,
) -> str | None:
    """Why ``consent`` does not cover the send at ``at``, or None if it does."""
    level = required_level(rules.categories, category, channel)
    if level is None:
        return f"{category} cannot be sent by {channel}"
    if level is ConsentLevel.NONE:
        return None
    if consent is None:
        return f"{category} by {channel} needs {level.name.lower()} consent; none is recorded"
    if BASIS_LEVEL[consent.basis] < level:
        return (
            f"{category} by {channel} needs {level.name.lower()} consent; "
            f"the record is {consent.basis}"
        )
    lapse = expires_at(consent, rules.durations)
    if lapse is not None and lapse <= at:
        return f"{consent.basis} consent of {consent.since.date()} lapsed at {lapse.isoformat()}"
    return None
