"""Rule files' schema (pure layer): one parsed TOML table in, one checked ``Layer`` out.

``rules/loading.py`` reads the files and lays the operator's layer over the shipped one; this
module checks one file's contents key by key. Every problem is a ``RulesError(file, dotted
key, message)``, as sender catalogs report theirs (keywords/schema.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import TypeVar

from rules.errors import RulesError
from rules.model import (
    WEEKDAYS,
    Basis,
    Cap,
    Category,
    CategoryPolicy,
    Channel,
    Conditions,
    ConsentLevel,
    Duration,
    HolidayDay,
    HolidayDefinition,
    Period,
    Rule,
    Scope,
    Source,
    Window,
)

__all__ = ["Layer", "parse_rule_data"]

_TOP = frozenset({"rules", "categories", "consent", "holidays"})
_RULE = frozenset(
    {
        "title",
        "jurisdiction",
        "presume_by_area_code",
        "channels",
        "categories",
        "closed_on",
        "sources",
        "effective",
        "windows",
        "caps",
        "conditions",
    }
)
_SOURCE = frozenset({"citation", "url", "checked"})
_EFFECTIVE = frozenset({"from", "until"})
_CAP = frozenset({"count", "period", "scope", "across_channels"})
_CONDITIONS = frozenset({"max_chars", "free_to_recipient", "names_provider", "stop_instructions"})
_CATEGORY = frozenset({"consent", "jurisdictions"})
_DURATION = frozenset({"months", "sources"})
_HOLIDAYS = frozenset({"title", "observed", "sources", "days", "extra"})
_HOLIDAY_DAY = frozenset(
    {"name", "date", "month", "weekday", "nth", "offset_days", "from", "until", "years"}
)
_WINDOW_GROUPS = {
    "daily": WEEKDAYS,
    "weekdays": WEEKDAYS[:5],
    "weekend": WEEKDAYS[5:],
    **{day: (day,) for day in WEEKDAYS},
}
_OBSERVED = ("none", "nearest_weekday", "next_monday")
_ID = re.compile(r"[a-z][a-z0-9_]{0,63}")
_JURISDICTION = re.compile(r"[A-Z]{2}(?:-[A-Z0-9]{1,3})?")
_WINDOW = re.compile(r"(\d\d):(\d\d)-(\d\d):(\d\d)")
_MONTH_DAY = re.compile(r"(\d\d)-(\d\d)")
_LEVELS = {level.name.lower(): level for level in ConsentLevel}
MAX_TEXT = 2_048
MAX_CAPS = 20
MAX_LIST = 50

E = TypeVar("E", bound=StrEnum)


@dataclass
class Layer:
    """What one directory's files define, with the file that defined each item."""

    rules: dict[str, Rule] = field(default_factory=dict)
    categories: dict[Category, CategoryPolicy] = field(default_factory=dict)
    durations: dict[Basis, Duration] = field(default_factory=dict)
    holidays: dict[str, HolidayDefinition] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)


def parse_rule_data(data: Mapping[str, object], source: str) -> Layer:
    """Validate one file's parsed TOML; raise ``RulesError`` on the first problem."""
    p = _Parser(source)
    p.keys(data, "", _TOP)
    layer = Layer(files=[source])
    for name, value, key in p.entries(data, "rules"):
        p.slug(key, name)
        layer.rules[name] = _rule(p, name, p.table(value, key), key)
    for name, value, key in p.entries(data, "categories"):
        category = p.choice(key, name, Category, "a category")
        layer.categories[category] = _category(p, category, p.table(value, key), key)
    for name, value, key in p.entries(data, "consent"):
        basis = p.choice(key, name, Basis, "a consent basis")
        layer.durations[basis] = _duration(p, basis, p.table(value, key), key)
    for name, value, key in p.entries(data, "holidays"):
        p.slug(key, name)
        layer.holidays[name] = _holidays(p, name, p.table(value, key), key)
    return layer


def _rule(p: _Parser, name: str, data: Mapping[str, object], key: str) -> Rule:
    p.keys(data, key, _RULE)
    jurisdiction = p.text(data, key, "jurisdiction")
    if not _JURISDICTION.fullmatch(jurisdiction):
        raise p.fail(f"{key}.jurisdiction", f'"{jurisdiction}" is not like "US" or "US-FL"')
    channels = p.members(data, key, "channels", Channel, required=True)
    categories = p.members(data, key, "categories", Category, required=True)
    effective_from, effective_until = _effective(p, data, key)
    windows = _windows(p, data, key)
    caps = _caps(p, data, key)
    conditions = _conditions(p, data, key)
    if windows is None and not caps and conditions is None:
        raise p.fail(key, "has no windows, caps or conditions: it would do nothing")
    closed_on = frozenset(p.strings(data, key, "closed_on"))
    for calendar in closed_on:
        p.slug(f"{key}.closed_on", calendar)
    if closed_on and windows is None:
        raise p.fail(f"{key}.closed_on", "closes on holidays but the rule has no windows")
    return Rule(
        id=name,
        title=p.text(data, key, "title"),
        jurisdiction=jurisdiction,
        presume_by_area_code=p.flag(data, key, "presume_by_area_code"),
        channels=frozenset(channels),
        categories=frozenset(categories),
        windows=windows,
        closed_on=closed_on,
        caps=caps,
        conditions=conditions,
        effective_from=effective_from,
        effective_until=effective_until,
        sources=_sources(p, data, key, required=True),
        file=p.source,
    )


def _effective(p: _Parser, data: Mapping[str, object], key: str) -> tuple[date | None, ...]:
    if "effective" not in data:
        return None, None
    key = f"{key}.effective"
    table = p.table(data["effective"], key)
    p.keys(table, key, _EFFECTIVE)
    start, end = (p.day(table, key, name) for name in ("from", "until"))
    if start is not None and end is not None and end < start:
        raise p.fail(f"{key}.until", f"ends ({end}) before it starts ({start})")
    return start, end


def _windows(p: _Parser, data: Mapping[str, object], key: str) -> tuple[Window | None, ...] | None:
    if "windows" not in data:
        return None
    key = f"{key}.windows"
    table = p.table(data["windows"], key)
    days: dict[str, tuple[Window | None, str]] = {}
    for name, value in table.items():
        where = f"{key}.{name}"
        group = _WINDOW_GROUPS.get(name)
        if group is None:
            raise p.fail(where, "is not a weekday: mon..sun, weekdays, weekend or daily")
        window = _window(p, where, value)
        for day in group:
            first = days.get(day)
            if first is not None:
                raise p.fail(where, f"sets {day} again (already set by {first[1]})")
            days[day] = (window, where)
    result = tuple(days.get(day, (None, ""))[0] for day in WEEKDAYS)
    if all(w is None for w in result):
        raise p.fail(key, "never opens: every day is closed")
    return result


def _window(p: _Parser, key: str, value: object) -> Window | None:
    if value == "closed":
        return None
    match = _WINDOW.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise p.fail(key, 'must be "HH:MM-HH:MM" or "closed"')
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2):
        raise p.fail(key, f'"{value}" is not a time of day (00:00 to 24:00)')
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if end <= start:
        raise p.fail(key, f'"{value}" ends before it starts (a window may not cross midnight)')
    return Window(start, end)


def _caps(p: _Parser, data: Mapping[str, object], key: str) -> tuple[Cap, ...]:
    caps: list[Cap] = []
    seen: dict[tuple[Period, Scope], str] = {}
    for i, value in enumerate(p.array(data, key, "caps", MAX_CAPS)):
        where = f"{key}.caps[{i}]"
        table = p.table(value, where)
        p.keys(table, where, _CAP)
        count = p.integer(table, where, "count", low=1, high=10_000)
        period = p.choice(f"{where}.period", p.text(table, where, "period"), Period, "a period")
        scope = p.choice(f"{where}.scope", p.text(table, where, "scope"), Scope, "a scope")
        across = p.flag(table, where, "across_channels")
        if scope is Scope.CHANNEL and across:
            raise p.fail(f"{where}.across_channels", 'a "channel" scope counts one channel')
        first = seen.get((period, scope))
        if first is not None:
            raise p.fail(where, f"conflicts with {first} (same period and scope)")
        seen[(period, scope)] = where
        caps.append(Cap(count, period, scope, across))
    return tuple(caps)


def _conditions(p: _Parser, data: Mapping[str, object], key: str) -> Conditions | None:
    if "conditions" not in data:
        return None
    key = f"{key}.conditions"
    table = p.table(data["conditions"], key)
    p.keys(table, key, _CONDITIONS)
    max_chars = p.optional_integer(table, key, "max_chars", low=1, high=100_000)
    return Conditions(
        max_chars=max_chars,
        free_to_recipient=p.flag(table, key, "free_to_recipient"),
        names_provider=p.flag(table, key, "names_provider"),
        stop_instructions=p.flag(table, key, "stop_instructions"),
    )


def _category(
    p: _Parser, category: Category, data: Mapping[str, object], key: str
) -> CategoryPolicy:
    p.keys(data, key, _CATEGORY)
    where = f"{key}.consent"
    table = p.table(data.get("consent"), where)
    if not table:
        raise p.fail(where, "must name at least one channel")
    consent: dict[Channel, ConsentLevel] = {}
    for name, value in table.items():
        channel = p.choice(f"{where}.{name}", name, Channel, "a channel")
        level = _LEVELS.get(value) if isinstance(value, str) else None
        if level is None:
            raise p.fail(f"{where}.{name}", f"must be one of {', '.join(_LEVELS)}")
        consent[channel] = level
    places = p.strings(data, key, "jurisdictions") if "jurisdictions" in data else None
    for place in places or ():
        if not _JURISDICTION.fullmatch(place):
            raise p.fail(f"{key}.jurisdictions", f'"{place}" is not like "US" or "US-FL"')
    jurisdictions = frozenset(places) if places is not None else None
    return CategoryPolicy(category, consent, jurisdictions, p.source)


def _duration(p: _Parser, basis: Basis, data: Mapping[str, object], key: str) -> Duration:
    p.keys(data, key, _DURATION)
    _sources(p, data, key, required=False)
    months = p.optional_integer(data, key, "months", low=1, high=1200)
    return Duration(basis, months, p.source)


def _holidays(p: _Parser, name: str, data: Mapping[str, object], key: str) -> HolidayDefinition:
    p.keys(data, key, _HOLIDAYS)
    observed = p.text(data, key, "observed")
    if observed not in _OBSERVED:
        raise p.fail(f"{key}.observed", f"must be one of {', '.join(_OBSERVED)}")
    _sources(p, data, key, required=True)
    days = tuple(
        _holiday_day(p, value, f"{key}.days[{i}]")
        for i, value in enumerate(p.array(data, key, "days", MAX_LIST))
    )
    extra = data.get("extra", [])
    if not isinstance(extra, list) or not all(type(d) is date for d in extra):
        raise p.fail(f"{key}.extra", "must be a list of dates (2027-01-20)")
    if not days and not extra:
        raise p.fail(key, "has no days")
    return HolidayDefinition(
        name, p.text(data, key, "title"), observed, days, frozenset(extra), p.source
    )


def _holiday_day(p: _Parser, value: object, key: str) -> HolidayDay:
    table = p.table(value, key)
    p.keys(table, key, _HOLIDAY_DAY)
    name = p.text(table, key, "name")
    offset = p.optional_integer(table, key, "offset_days", low=-7, high=7) or 0
    first = p.optional_integer(table, key, "from", low=1900, high=2200)
    last = p.optional_integer(table, key, "until", low=1900, high=2200)
    if first is not None and last is not None and last < first:
        raise p.fail(f"{key}.until", f"ends ({last}) before it starts ({first})")
    years = table.get("years", "all")
    if years not in ("all", "even", "odd"):
        raise p.fail(f"{key}.years", 'must be "all", "even" or "odd"')
    common = {"name": name, "offset_days": offset, "from_year": first, "until_year": last}
    if "date" in table:
        if {"month", "weekday", "nth"} & set(table):
            raise p.fail(key, 'gives "date" and also "month"/"weekday"/"nth": pick one form')
        text = table["date"]
        match = _MONTH_DAY.fullmatch(text) if isinstance(text, str) else None
        if match is None:
            raise p.fail(f"{key}.date", 'must be "MM-DD"')
        month, day = int(match[1]), int(match[2])
        try:
            date(2000, month, day)  # a leap year: 02-29 is a date
        except ValueError:
            raise p.fail(f"{key}.date", f'"{text}" is not a day of the year') from None
        return HolidayDay(month=month, day=day, years=str(years), **common)  # type: ignore[arg-type]
    month = p.integer(table, key, "month", low=1, high=12)
    weekday_name = p.text(table, key, "weekday")
    if weekday_name not in WEEKDAYS:
        raise p.fail(f"{key}.weekday", "is not a weekday: mon..sun")
    nth = p.integer(table, key, "nth", low=-1, high=5)
    if nth == 0:
        raise p.fail(f"{key}.nth", "must be 1 to 5, or -1 for the last")
    return HolidayDay(
        month=month,
        weekday=WEEKDAYS.index(weekday_name),
        nth=nth,
        years=str(years),
        **common,  # type: ignore[arg-type]
    )


def _sources(
    p: _Parser, data: Mapping[str, object], key: str, *, required: bool
) -> tuple[Source, ...]:
    items = p.array(data, key, "sources", MAX_LIST)
    if required and not items:
        raise p.fail(f"{key}.sources", "must cite at least one source")
    found = []
    for i, value in enumerate(items):
        where = f"{key}.sources[{i}]"
        table = p.table(value, where)
        p.keys(table, where, _SOURCE)
        url = p.text(table, where, "url")
        if not url.startswith("https://"):
            raise p.fail(f"{where}.url", "must be an https:// address")
        found.append(Source(p.text(table, where, "citation"), url, p.text(table, where, "checked")))
    return tuple(found)


class _Parser:
    """Typed reads from one file's data; every ``fail`` names the file."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, message: str) -> RulesError:
        return RulesError(self.source, key, message)

    def keys(self, data: Mapping[str, object], key: str, allowed: frozenset[str]) -> None:
        for name in data:
            if name not in allowed:
                raise self.fail(f"{key}.{name}" if key else name, "unknown key")

    def table(self, value: object, key: str) -> Mapping[str, object]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(key, "must be a table")
        return value

    def entries(self, data: Mapping[str, object], name: str) -> Iterator[tuple[str, object, str]]:
        for entry, value in self.table(data.get(name), name).items():
            yield entry, value, f"{name}.{entry}"

    def slug(self, key: str, name: str) -> None:
        if not _ID.fullmatch(name):
            raise self.fail(key, f'"{name}" must be lower-case letters, digits and _')

    def text(self, data: Mapping[str, object], key: str, name: str) -> str:
        value = data.get(name)
        if value is None:
            raise self.fail(f"{key}.{name}", "is required")
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"{key}.{name}", "must be a non-empty string")
        if len(value) > MAX_TEXT or any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in value):
            raise self.fail(f"{key}.{name}", "is too long or holds control characters")
        return value.strip()

    def flag(self, data: Mapping[str, object], key: str, name: str) -> bool:
        value = data.get(name, False)
        if not isinstance(value, bool):
            raise self.fail(f"{key}.{name}", "must be true or false")
        return value

    def integer(
        self, data: Mapping[str, object], key: str, name: str, *, low: int, high: int
    ) -> int:
        found = self.optional_integer(data, key, name, low=low, high=high)
        if found is None:
            raise self.fail(f"{key}.{name}", "is required")
        return found

    def optional_integer(
        self, data: Mapping[str, object], key: str, name: str, *, low: int, high: int
    ) -> int | None:
        value = data.get(name)
        if value is None:
            return None
        if type(value) is not int or not low <= value <= high:
            raise self.fail(f"{key}.{name}", f"must be a whole number from {low} to {high}")
        return value

    def day(self, data: Mapping[str, object], key: str, name: str) -> date | None:
        value = data.get(name)
        if value is None:
            return None
        if type(value) is not date:
            raise self.fail(f"{key}.{name}", "must be a date (2024-01-01)")
        return value

    def array(
        self, data: Mapping[str, object], key: str, name: str, limit: int
    ) -> Sequence[object]:
        value = data.get(name, [])
        if not isinstance(value, list):
            raise self.fail(f"{key}.{name}", "must be a list")
        if len(value) > limit:
            raise self.fail(f"{key}.{name}", f"at most {limit} entries")
        return value

    def strings(self, data: Mapping[str, object], key: str, name: str) -> list[str]:
        value = self.array(data, key, name, MAX_LIST)
        if not all(isinstance(v, str) for v in value):
            raise self.fail(f"{key}.{name}", "must be a list of strings")
        return [str(v) for v in value]

    def members(
        self, data: Mapping[str, object], key: str, name: str, kind: type[E], *, required: bool
    ) -> list[E]:
        values = self.strings(data, key, name)
        if required and not values:
            raise self.fail(f"{key}.{name}", "must name at least one")
        what = {"categories": "a category", "channels": "a channel"}.get(name, "one of them")
        found = [self.choice(f"{key}.{name}", v, kind, what) for v in values]
        if len(set(found)) != len(found):
            raise self.fail(f"{key}.{name}", "names one twice")
        return found

    def choice(self, key: str, value: str, kind: type[E], what: str) -> E:
        try:
            return kind(value)
        except ValueError:
            names = ", ".join(str(m) for m in kind)
            raise self.fail(key, f'"{value}" is not {what} ({names})') from None
