"""Calling-hour windows of the shipped table: every boundary minute, weekends, DST, two zones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from rules_cases import CHICAGO, EXPRESS, GOOD_MESSAGE, LA, NY, ask, local

from rules.model import Basis, Category, Channel, Consent, Verdict

WED = (2027, 3, 10)  # a Wednesday before the spring DST change
SAT = (2027, 3, 6)
SUN = (2027, 3, 7)
FRI = (2027, 3, 5)

# (case, location key, zone, local date, local hh:mm, verdict, not_before as (date, hh:mm))
BOUNDARIES = [
    # 47 CFR 64.1200(c)(1): 08:00-21:00 (New York number, no state rule)
    ("federal 07:59", "+1212", NY, WED, (7, 59), "deferred", (WED, (8, 0))),
    ("federal 08:00", "+1212", NY, WED, (8, 0), "allowed", None),
    ("federal 20:59", "+1212", NY, WED, (20, 59), "allowed", None),
    ("federal 21:00", "+1212", NY, WED, (21, 0), "deferred", ((2027, 3, 11), (8, 0))),
    # Fla. Stat. 501.616(6)(a): 08:00-20:00
    ("florida 07:59", "+1305", NY, WED, (7, 59), "deferred", (WED, (8, 0))),
    ("florida 08:00", "+1305", NY, WED, (8, 0), "allowed", None),
    ("florida 19:59", "+1305", NY, WED, (19, 59), "allowed", None),
    ("florida 20:00", "+1305", NY, WED, (20, 0), "deferred", ((2027, 3, 11), (8, 0))),
    # Oklahoma (Central time): 08:00-20:00
    ("oklahoma 07:59", "+1405", CHICAGO, WED, (7, 59), "deferred", (WED, (8, 0))),
    ("oklahoma 08:00", "+1405", CHICAGO, WED, (8, 0), "allowed", None),
    ("oklahoma 19:59", "+1405", CHICAGO, WED, (19, 59), "allowed", None),
    ("oklahoma 20:00", "+1405", CHICAGO, WED, (20, 0), "deferred", ((2027, 3, 11), (8, 0))),
    # Maryland: 08:00-20:00
    ("maryland 07:59", "+1410", NY, WED, (7, 59), "deferred", (WED, (8, 0))),
    ("maryland 08:00", "+1410", NY, WED, (8, 0), "allowed", None),
    ("maryland 19:59", "+1410", NY, WED, (19, 59), "allowed", None),
    ("maryland 20:00", "+1410", NY, WED, (20, 0), "deferred", ((2027, 3, 11), (8, 0))),
    # Texas (Austin, Central): Mon-Sat 09:00-21:00, Sun 12:00-21:00
    ("texas weekday 08:59", "+1512", CHICAGO, WED, (8, 59), "deferred", (WED, (9, 0))),
    ("texas weekday 09:00", "+1512", CHICAGO, WED, (9, 0), "allowed", None),
    ("texas weekday 20:59", "+1512", CHICAGO, WED, (20, 59), "allowed", None),
    ("texas weekday 21:00", "+1512", CHICAGO, WED, (21, 0), "deferred", ((2027, 3, 11), (9, 0))),
    ("texas saturday 08:59", "+1512", CHICAGO, SAT, (8, 59), "deferred", (SAT, (9, 0))),
    ("texas saturday 09:00", "+1512", CHICAGO, SAT, (9, 0), "allowed", None),
    ("texas saturday 21:00", "+1512", CHICAGO, SAT, (21, 0), "deferred", (SUN, (12, 0))),
    ("texas sunday 09:00", "+1512", CHICAGO, SUN, (9, 0), "deferred", (SUN, (12, 0))),
    ("texas sunday 11:59", "+1512", CHICAGO, SUN, (11, 59), "deferred", (SUN, (12, 0))),
    ("texas sunday 12:00", "+1512", CHICAGO, SUN, (12, 0), "allowed", None),
    ("texas sunday 20:59", "+1512", CHICAGO, SUN, (20, 59), "allowed", None),
    ("texas sunday 21:00", "+1512", CHICAGO, SUN, (21, 0), "deferred", ((2027, 3, 8), (9, 0))),
    # Connecticut: 09:00-20:00
    ("connecticut 08:59", "+1203", NY, WED, (8, 59), "deferred", (WED, (9, 0))),
    ("connecticut 09:00", "+1203", NY, WED, (9, 0), "allowed", None),
    ("connecticut 19:59", "+1203", NY, WED, (19, 59), "allowed", None),
    ("connecticut 20:00", "+1203", NY, WED, (20, 0), "deferred", ((2027, 3, 11), (9, 0))),
    # Rhode Island: Mon-Fri 09:00-18:00, Sat 10:00-17:00, Sunday closed
    ("rhode island weekday 08:59", "+1401", NY, WED, (8, 59), "deferred", (WED, (9, 0))),
    ("rhode island weekday 09:00", "+1401", NY, WED, (9, 0), "allowed", None),
    ("rhode island weekday 17:59", "+1401", NY, WED, (17, 59), "allowed", None),
    ("rhode island weekday 18:00", "+1401", NY, WED, (18, 0), "deferred", ((2027, 3, 11), (9, 0))),
    ("rhode island friday 18:00", "+1401", NY, FRI, (18, 0), "deferred", (SAT, (10, 0))),
    ("rhode island saturday 09:59", "+1401", NY, SAT, (9, 59), "deferred", (SAT, (10, 0))),
    ("rhode island saturday 10:00", "+1401", NY, SAT, (10, 0), "allowed", None),
    ("rhode island saturday 16:59", "+1401", NY, SAT, (16, 59), "allowed", None),
    ("rhode island saturday 17:00", "+1401", NY, SAT, (17, 0), "deferred", ((2027, 3, 8), (9, 0))),
    ("rhode island sunday 12:00", "+1401", NY, SUN, (12, 0), "deferred", ((2027, 3, 8), (9, 0))),
    # Rhode Island holidays: Memorial Day (federal) and Victory Day (state) are closed
    ("rhode island memorial day", "+1401", NY, (2027, 5, 31), (10, 0), "deferred",
     ((2027, 6, 1), (9, 0))),
    ("rhode island victory day", "+1401", NY, (2027, 8, 9), (10, 0), "deferred",
     ((2027, 8, 10), (9, 0))),
    # Washington (Pacific): 08:00-20:00
    ("washington 07:59", "+1206", LA, WED, (7, 59), "deferred", (WED, (8, 0))),
    ("washington 08:00", "+1206", LA, WED, (8, 0), "allowed", None),
    ("washington 19:59", "+1206", LA, WED, (19, 59), "allowed", None),
    ("washington 20:00", "+1206", LA, WED, (20, 0), "deferred", ((2027, 3, 11), (8, 0))),
    # 850 (Florida panhandle) spans Central and Eastern: 08:00-20:00 in both is 09:00-20:00 ET
    ("850 08:59 eastern", "+1850", NY, WED, (8, 59), "deferred", (WED, (9, 0))),
    ("850 09:00 eastern", "+1850", NY, WED, (9, 0), "allowed", None),
    ("850 19:59 eastern", "+1850", NY, WED, (19, 59), "allowed", None),
    ("850 20:00 eastern", "+1850", NY, WED, (20, 0), "deferred", ((2027, 3, 11), (9, 0))),
    # 812 (Indiana) spans both too, federal hours only: 09:00-21:00 ET
    ("812 08:59 eastern", "+1812", NY, WED, (8, 59), "deferred", (WED, (9, 0))),
    ("812 20:59 eastern", "+1812", NY, WED, (20, 59), "allowed", None),
    ("812 21:00 eastern", "+1812", NY, WED, (21, 0), "deferred", ((2027, 3, 11), (9, 0))),
]  # fmt: skip


@pytest.mark.parametrize(
    ("key", "zone", "day", "clock", "verdict", "expected"),
    [pytest.param(*row[1:], id=row[0]) for row in BOUNDARIES],
)
def test_marketing_boundary_minute(
    key: str,
    zone: ZoneInfo,
    day: tuple[int, int, int],
    clock: tuple[int, int],
    verdict: str,
    expected: tuple[tuple[int, int, int], tuple[int, int]] | None,
) -> None:
    """Each shipped window opens on its first minute and is shut on its closing minute."""
    at = local(zone, *day, *clock)
    answer = ask(key, at)
    assert verdict == answer.verdict, answer.reason
    want = at if expected is None else local(zone, *expected[0], *expected[1])
    assert want == answer.not_before


def test_deferral_names_the_rule_and_its_source() -> None:
    """A deferred answer says which rule, its citation and why."""
    answer = ask("+1305", local(NY, *WED, 20, 0))
    assert "us_fl_telemarketing" in answer.reason
    assert "501.616(6)" in answer.reason
    assert "20:00" in answer.reason


def test_a_second_before_closing_is_allowed_and_closing_is_not() -> None:
    """Windows are half-open: 20:59:59.999999 in, 21:00:00 out."""
    edge = local(NY, *WED, 21, 0)
    assert Verdict.ALLOWED == ask("+1212", edge - timedelta(microseconds=1)).verdict
    assert Verdict.DEFERRED == ask("+1212", edge).verdict


# Spring forward 2027-03-14 (02:00 -> 03:00), fall back 2027-11-07 (02:00 -> 01:00).
DST = [
    ("spring new york", "+1212", datetime(2027, 3, 14, 2, 0, tzinfo=UTC),
     datetime(2027, 3, 14, 12, 0, tzinfo=UTC)),  # Sat 21:00 EST -> Sun 08:00 EDT
    ("spring chicago", "+1312", datetime(2027, 3, 14, 3, 0, tzinfo=UTC),
     datetime(2027, 3, 14, 13, 0, tzinfo=UTC)),  # Sat 21:00 CST -> Sun 08:00 CDT
    ("spring in the gap", "+1212", datetime(2027, 3, 14, 7, 0, tzinfo=UTC),
     datetime(2027, 3, 14, 12, 0, tzinfo=UTC)),  # the instant 02:00 EST becomes 03:00 EDT
    ("fall new york", "+1212", datetime(2027, 11, 7, 1, 0, tzinfo=UTC),
     datetime(2027, 11, 7, 13, 0, tzinfo=UTC)),  # Sat 21:00 EDT -> Sun 08:00 EST
    ("fall chicago", "+1312", datetime(2027, 11, 7, 2, 0, tzinfo=UTC),
     datetime(2027, 11, 7, 14, 0, tzinfo=UTC)),  # Sat 21:00 CDT -> Sun 08:00 CST
    ("fall repeated hour", "+1212", datetime(2027, 11, 7, 6, 30, tzinfo=UTC),
     datetime(2027, 11, 7, 13, 0, tzinfo=UTC)),  # 01:30 EST, the second 01:30
    ("fall 850 two zones", "+1850", datetime(2027, 11, 7, 1, 0, tzinfo=UTC),
     datetime(2027, 11, 7, 14, 0, tzinfo=UTC)),  # Sun 09:00 EST = 08:00 CST
    ("spring 850 two zones", "+1850", datetime(2027, 3, 14, 2, 0, tzinfo=UTC),
     datetime(2027, 3, 14, 13, 0, tzinfo=UTC)),  # Sun 09:00 EDT = 08:00 CDT
]  # fmt: skip


@pytest.mark.parametrize(("key", "at", "expected"), [pytest.param(*r[1:], id=r[0]) for r in DST])
def test_window_across_dst_change(key: str, at: datetime, expected: datetime) -> None:
    """The next opening is local 08:00 (09:00 ET for 850) in the offset of that morning."""
    answer = ask(key, at)
    assert Verdict.DEFERRED == answer.verdict
    assert expected == answer.not_before


def test_dst_day_closes_at_local_21_00_in_summer_offset() -> None:
    """On 2027-03-14 New York closes at 21:00 EDT (01:00 UTC), not 21:00 EST."""
    assert Verdict.ALLOWED == ask("+1212", datetime(2027, 3, 15, 0, 59, tzinfo=UTC)).verdict
    assert Verdict.DEFERRED == ask("+1212", datetime(2027, 3, 15, 1, 0, tzinfo=UTC)).verdict


def test_recorded_zone_replaces_the_area_codes_zones() -> None:
    """850 recorded in New York opens at 08:00 ET, an hour before the two-zone 09:00 ET."""
    at = local(NY, *WED, 8, 0)
    assert Verdict.DEFERRED == ask("+1850", at).verdict
    assert Verdict.ALLOWED == ask("+1850||America/New_York", at).verdict
    late = local(NY, *WED, 20, 30)  # 19:30 Central: open in Chicago only
    assert Verdict.DEFERRED == ask("+1850", late).verdict
    assert Verdict.ALLOWED == ask("+1850||America/Chicago", late).verdict


def test_florida_presumption_survives_a_recorded_state() -> None:
    """A 305 number recorded in New York still gets Florida's 20:00 close (501.059)."""
    answer = ask("+1305|US-NY|America/New_York", local(NY, *WED, 20, 30))
    assert Verdict.DEFERRED == answer.verdict
    assert "us_fl_telemarketing" in answer.reason


def test_texas_without_presumption_follows_the_recorded_state() -> None:
    """A Texas number recorded in New York is not under the Texas Sunday noon rule."""
    at = local(NY, *SUN, 10, 0)
    assert Verdict.DEFERRED == ask("+1512", at).verdict
    assert Verdict.ALLOWED == ask("+1512|US-NY|America/New_York", at).verdict


def test_informational_and_healthcare_keep_house_hours() -> None:
    """Non-marketing texts keep 08:00-21:00 (house.toml), without the state windows."""
    at = local(NY, *WED, 7, 59)
    info = ask("+1305", at, Category.INFORMATIONAL, consent=EXPRESS)
    assert (Verdict.DEFERRED, local(NY, *WED, 8, 0)) == (info.verdict, info.not_before)
    late = ask("+1305", local(NY, *WED, 20, 30), Category.INFORMATIONAL, consent=EXPRESS)
    assert Verdict.ALLOWED == late.verdict  # Florida's 20:00 binds sales calls only
    care = ask("+1212", at, Category.HEALTHCARE_EXEMPT, consent=None, message=GOOD_MESSAGE)
    assert Verdict.DEFERRED == care.verdict


def test_transactional_has_no_hours() -> None:
    """A one-time code the person asked for goes at 03:00."""
    answer = ask("+1401", local(NY, *SUN, 3, 0), Category.TRANSACTIONAL, consent=EXPRESS)
    assert Verdict.ALLOWED == answer.verdict


def test_email_marketing_has_no_calling_hours() -> None:
    """The hours rules cover calls and texts; email at 03:00 is allowed."""
    implied = Consent(Basis.IMPLIED_PURCHASE, datetime(2026, 6, 1, tzinfo=UTC))
    answer = ask("@", local(NY, *WED, 3, 0), channel=Channel.EMAIL, consent=implied)
    assert Verdict.ALLOWED == answer.verdict


def test_a_number_outside_the_us_gets_no_us_hours() -> None:
    """A UK number is not under 47 CFR 64.1200(c)(1) (docs/rules.md: only US rules ship)."""
    assert Verdict.ALLOWED == ask("+44", datetime(2027, 3, 10, 3, 0, tzinfo=UTC)).verdict


def test_naive_datetime_is_rejected() -> None:
    """A naive ``at`` has no instant: refuse to guess."""
    with pytest.raises(ValueError, match="aware"):
        ask("+1212", datetime(2027, 3, 10, 12, 0))
