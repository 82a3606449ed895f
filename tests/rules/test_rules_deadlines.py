"""Holidays, business days, opt-out deadlines and the revoke-all switch."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from rules_cases import NY, local, shipped

from rules.deadlines import (
    confirmation_deadline,
    one_click_deadline,
    opt_out_deadlines,
    revocation_deadline,
)
from rules.holidays import HolidayCalendar, business_days_after
from rules.model import Channel
from rules.revocation import parse_revoke_all, revoke_all_in_force


def federal() -> HolidayCalendar:
    return HolidayCalendar([shipped().holidays["us_federal"]])


def test_federal_holidays_2027_with_observed_days() -> None:
    """5 U.S.C. 6103: Juneteenth (Sat) kept Fri 18 June, 4 July (Sun) Mon 5 July, Christmas
    (Sat) Fri 24 December, and New Year 2028 (Sat) Fri 31 December 2027."""
    observed = {
        date(2027, 1, 1), date(2027, 1, 18), date(2027, 2, 15), date(2027, 5, 31),
        date(2027, 6, 18), date(2027, 7, 5), date(2027, 9, 6), date(2027, 10, 11),
        date(2027, 11, 11), date(2027, 11, 25), date(2027, 12, 24), date(2027, 12, 31),
    }  # fmt: skip
    assert observed <= set(federal().dates(2027))
    assert date(2027, 12, 31) in federal()


def test_juneteenth_only_from_2021() -> None:
    """Pub. L. 117-17 made 19 June a holiday from 2021."""
    assert date(2020, 6, 19) not in federal()
    assert date(2021, 6, 18) in federal()  # 2021: Saturday, kept on Friday


def test_rhode_island_calendar() -> None:
    """R.I. Gen. Laws 25-1-1: Victory Day, 4 May, election day in even years only."""
    ri = HolidayCalendar([shipped().holidays["us_ri"]])
    assert {date(2027, 8, 9), date(2027, 5, 4), date(2026, 11, 3)} <= set(
        ri.dates(2027) + ri.dates(2026)
    )
    assert date(2027, 11, 2) not in ri


@pytest.mark.parametrize(
    ("start", "n", "expected"),
    [
        (date(2027, 1, 15), 10, date(2027, 2, 1)),  # Fri; MLK Day (Jan 18) skipped
        (date(2027, 12, 20), 10, date(2028, 1, 5)),  # Dec 24 and Dec 31 are observed
        (date(2027, 3, 6), 1, date(2027, 3, 8)),  # Saturday: Monday is the first
        (date(2027, 3, 10), 0, date(2027, 3, 10)),
        (date(2027, 11, 24), 2, date(2027, 11, 29)),  # Thanksgiving Nov 25
    ],
)
def test_business_days_after(start: date, n: int, expected: date) -> None:
    """Counting starts the day after; weekends and federal holidays do not count."""
    assert expected == business_days_after(start, n, federal())


def test_business_days_negative_is_an_error() -> None:
    with pytest.raises(ValueError, match="negative"):
        business_days_after(date(2027, 1, 1), -1, federal())


def test_revocation_deadline_keeps_the_clock_time() -> None:
    """Ten business days after Fri 15 Jan 2027 15:30 ET: Mon 1 Feb 15:30 ET."""
    received = local(NY, 2027, 1, 15, 15, 30)
    assert local(NY, 2027, 2, 1, 15, 30) == revocation_deadline(
        received, federal(), "America/New_York"
    )


def test_short_deadlines() -> None:
    """Five minutes for the SMS confirmation, two days for a one-click unsubscribe."""
    received = datetime(2027, 3, 10, 12, 0, tzinfo=UTC)
    assert received + timedelta(minutes=5) == confirmation_deadline(received)
    assert received + timedelta(days=2) == one_click_deadline(received)


def test_opt_out_deadlines_per_channel() -> None:
    """SMS: confirm in 5 minutes, honour in 10 business days; email: 2 days bind first."""
    received = local(NY, 2027, 1, 15, 15, 30)
    sms = opt_out_deadlines(received, Channel.SMS, federal(), "America/New_York")
    assert received + timedelta(minutes=5) == sms.confirm_by
    assert local(NY, 2027, 2, 1, 15, 30) == sms.honour_by
    mail = opt_out_deadlines(received, Channel.EMAIL, federal(), "America/New_York")
    assert (None, received + timedelta(days=2)) == (mail.confirm_by, mail.honour_by)
    assert "2 days" in mail.binding


def test_deadlines_need_aware_times() -> None:
    with pytest.raises(ValueError, match="aware"):
        confirmation_deadline(datetime(2027, 1, 1))


def test_revoke_all_default_is_2027_01_31_washington_time() -> None:
    """FCC DA 26-12: in force from 2027-01-31 00:00 in New York."""
    start = local(NY, 2027, 1, 31, 0, 0)
    assert not revoke_all_in_force(start - timedelta(microseconds=1))
    assert revoke_all_in_force(start)
    assert revoke_all_in_force(start, "auto")


def test_revoke_all_may_come_early_never_late() -> None:
    """ "on" and an earlier date bring it forward; a later date or "off" is refused."""
    assert revoke_all_in_force(datetime(2026, 12, 2, tzinfo=UTC), "on")
    assert revoke_all_in_force(local(NY, 2026, 12, 1, 0, 0), "2026-12-01")
    assert not revoke_all_in_force(local(NY, 2026, 11, 30, 23, 59), "2026-12-01")
    assert parse_revoke_all("on") is None
    for bad in ("off", "2027-02-01", "soon"):
        with pytest.raises(ValueError, match="revoke_all"):
            parse_revoke_all(bad)
