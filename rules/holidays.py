"""Holiday calendars (pure layer): dates from the rule data's definitions, and business days.

A calendar holds both the holiday's own date and the day it is observed on when it falls on a
weekend (5 U.S.C. 6103(b) and Executive Order 11582 for federal holidays: Saturday's is kept
on the Friday before, Sunday's on the Monday after). Holding both is the strict reading for
the rules that close on holidays (R.I. Gen. Laws 5-61-2(2)) and changes nothing for
business days, which exclude weekends anyway.
"""

from __future__ import annotations

import calendar
from collections.abc import Container, Iterable
from datetime import date, timedelta
from functools import lru_cache

from rules.model import HolidayDay, HolidayDefinition

__all__ = ["HolidayCalendar", "business_days_after", "is_business_day"]


class HolidayCalendar:
    """The holidays of one or more definitions, computed a year at a time on demand."""

    def __init__(self, definitions: Iterable[HolidayDefinition]) -> None:
        self.definitions = tuple(definitions)
        self.names = frozenset(d.name for d in self.definitions)
        self._years: dict[int, frozenset[date]] = {}

    def __contains__(self, day: object) -> bool:
        if not isinstance(day, date):
            return False
        year = self._years.get(day.year)
        if year is None:
            # A holiday observed on 31 December belongs to the next year's New Year's Day.
            found = set(self._year(day.year)) | set(self._year(day.year + 1))
            year = self._years[day.year] = frozenset(d for d in found if d.year == day.year)
        return day in year

    def _year(self, year: int) -> frozenset[date]:
        return frozenset(d for definition in self.definitions for d in _dates(definition, year))

    def dates(self, year: int) -> list[date]:
        """Every holiday date of ``year``, sorted (actual and observed)."""
        return sorted(d for d in self._year(year) | self._year(year + 1) if d.year == year)


@lru_cache(maxsize=4096)
def _dates(definition: HolidayDefinition, year: int) -> frozenset[date]:
    found = {d for d in definition.extra if d.year == year}
    for day in definition.days:
        actual = _actual(day, year)
        if actual is None:
            continue
        found.add(actual)
        found.add(_observed(actual, definition.observed))
    return frozenset(found)


def _actual(day: HolidayDay, year: int) -> date | None:
    if day.from_year is not None and year < day.from_year:
        return None
    if day.until_year is not None and year > day.until_year:
        return None
    if (day.years == "even" and year % 2) or (day.years == "odd" and not year % 2):
        return None
    if day.day is not None:
        found = date(year, day.month, day.day)
    else:
        if day.weekday is None or day.nth is None:  # the loader never builds one
            return None
        found = _nth_weekday(year, day.month, day.weekday, day.nth)
    return found + timedelta(days=day.offset_days)


def _nth_weekday(year: int, month: int, weekday: int, nth: int) -> date:
    """The ``nth`` ``weekday`` of the month (1 the first, -1 the last)."""
    if nth < 0:
        last = date(year, month, calendar.monthrange(year, month)[1])
        return last - timedelta(days=(last.weekday() - weekday) % 7)
    first = date(year, month, 1)
    return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (nth - 1))


def _observed(actual: date, rule: str) -> date:
    weekday = actual.weekday()
    if rule == "nearest_weekday":
        return actual - timedelta(days=1) if weekday == 5 else actual + timedelta(days=weekday // 6)
    if rule == "next_monday" and weekday >= 5:
        return actual + timedelta(days=7 - weekday)
    return actual


def is_business_day(day: date, holidays: Container[date]) -> bool:
    """Monday to Friday and not a holiday."""
    return day.weekday() < 5 and day not in holidays


def business_days_after(day: date, n: int, holidays: Container[date]) -> date:
    """The ``n``-th business day after ``day`` (``day`` itself is not counted; 0 is ``day``).

    "Ten business days" of receipt (47 CFR 64.1200(a)(10), (d)(3); 15 U.S.C.
    7704(a)(4)(A)) counts from the day after the request, skipping Saturdays, Sundays and
    the ``holidays`` (normally the US federal calendar).
    """
    if n < 0:
        raise ValueError("n must not be negative")
    current = day
    while n:
        current += timedelta(days=1)
        if is_business_day(current, holidays):
            n -= 1
    return current
