"""Shared pieces for the rules tests: the shipped table compiled once, clocks and records."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

from rules.evaluate import CompiledRules
from rules.loading import load_rules
from rules.model import (
    NO_HISTORY,
    Answer,
    Basis,
    Cap,
    Category,
    Channel,
    Consent,
    History,
    MessageFacts,
    Rule,
    RuleSet,
    Source,
    Window,
)

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "config" / "rules"
NY = ZoneInfo("America/New_York")
CHICAGO = ZoneInfo("America/Chicago")
DENVER = ZoneInfo("America/Denver")
LA = ZoneInfo("America/Los_Angeles")
LONG_AGO = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
WRITTEN = Consent(Basis.EXPRESS_WRITTEN, LONG_AGO)
EXPRESS = Consent(Basis.EXPRESS, LONG_AGO)
GOOD_MESSAGE = MessageFacts(
    chars=120, free_to_recipient=True, names_provider=True, stop_instructions=True
)


@cache
def shipped() -> RuleSet:
    return load_rules(SHIPPED)


@cache
def compiled() -> CompiledRules:
    return CompiledRules(shipped())


def local(zone: ZoneInfo, year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    """An aware local time: ``local(NY, 2027, 3, 14, 8, 0)``."""
    return datetime(year, month, day, hour, minute, tzinfo=zone)


def ask(
    key: str,
    at: datetime,
    category: Category = Category.MARKETING,
    *,
    channel: Channel = Channel.SMS,
    consent: Consent | None = WRITTEN,
    history: History = NO_HISTORY,
    message: MessageFacts | None = None,
) -> Answer:
    rules = compiled()
    return rules.evaluate(rules.location(key), at, category, channel, consent, history, message)


def extra_rule(
    windows: tuple[Window | None, ...] | None,
    *,
    caps: tuple[Cap, ...] = (),
    channels: frozenset[Channel] = frozenset(Channel),
    categories: frozenset[Category] = frozenset(Category),
    jurisdiction: str = "US",
    name: str = "test_extra",
) -> Rule:
    """An added (operator) rule for tests."""
    return Rule(
        id=name,
        title="test rule",
        jurisdiction=jurisdiction,
        presume_by_area_code=False,
        channels=channels,
        categories=categories,
        windows=windows,
        closed_on=frozenset(),
        caps=caps,
        conditions=None,
        effective_from=None,
        effective_until=None,
        sources=(Source("test", "https://example.org", "test"),),
        file="test",
    )


def with_rules(*extra: Rule, replace: bool = False) -> CompiledRules:
    """The shipped table plus ``extra`` rules (or with same-id rules replaced)."""
    base = shipped()
    ids = {r.id for r in extra}
    kept = tuple(r for r in base.rules if not (replace and r.id in ids))
    return CompiledRules(dataclasses.replace(base, rules=kept + extra))
