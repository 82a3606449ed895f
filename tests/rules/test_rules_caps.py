"""Frequency caps: Florida's three on a subject per 24 h, the healthcare day and week limits."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from rules_cases import EXPRESS, GOOD_MESSAGE, NY, ask, local

from rules.model import Answer, Category, Channel, History, MessageFacts, Sent, Verdict

MARKETING = Category.MARKETING
CARE = Category.HEALTHCARE_EXEMPT


def sends(
    *moments: datetime, category: Category = MARKETING, channel: Channel = Channel.SMS
) -> tuple[Sent, ...]:
    return tuple(Sent(m, channel, category) for m in moments)


WED_10, WED_11, WED_12 = (local(NY, 2027, 3, 10, h, 0) for h in (10, 11, 12))


def test_florida_third_send_in_24h_is_allowed() -> None:
    """Two earlier sends on the subject: the third goes."""
    answer = ask(
        "+1305", local(NY, 2027, 3, 10, 13, 0), history=History(subject=sends(WED_10, WED_11))
    )
    assert Verdict.ALLOWED == answer.verdict


def test_florida_fourth_send_waits_until_the_oldest_ages_out() -> None:
    """Three earlier sends: the fourth waits for 24 h after the first (501.616(6)(b))."""
    history = History(subject=sends(WED_10, WED_11, WED_12))
    answer = ask("+1305", local(NY, 2027, 3, 10, 13, 0), history=history)
    assert Verdict.DEFERRED == answer.verdict
    assert WED_10 + timedelta(hours=24) == answer.not_before
    assert "cap of 3 per rolling_24h" in answer.reason


def test_florida_cap_frees_exactly_24h_later() -> None:
    """At 24 h after the oldest send it no longer counts; a microsecond earlier it does."""
    history = History(subject=sends(WED_10, WED_11, WED_12))
    freed = WED_10 + timedelta(hours=24)
    assert Verdict.ALLOWED == ask("+1305", freed, history=history).verdict
    early = ask("+1305", freed - timedelta(microseconds=1), history=history)
    assert (Verdict.DEFERRED, freed) == (early.verdict, early.not_before)


def test_florida_cap_and_window_together() -> None:
    """Three sends late on Wednesday free at 19:xx Thursday, inside the window."""
    late = [local(NY, 2027, 3, 10, 19, m) for m in (0, 10, 20)]
    answer = ask("+1305", local(NY, 2027, 3, 10, 19, 30), history=History(subject=sends(*late)))
    assert local(NY, 2027, 3, 11, 19, 0) == answer.not_before


@pytest.mark.parametrize(
    ("case", "history"),
    [
        ("other subject (program scope only)", History(program=sends(WED_10, WED_11, WED_12))),
        (
            "other category",
            History(subject=sends(WED_10, WED_11, WED_12, category=Category.INFORMATIONAL)),
        ),
        ("other channel", History(subject=sends(WED_10, WED_11, WED_12, channel=Channel.EMAIL))),
        (
            "older than 24 h",
            History(
                subject=sends(*(m - timedelta(days=1, seconds=1) for m in (WED_10, WED_11, WED_12)))
            ),
        ),
    ],
)
def test_florida_cap_counts_only_its_own_sends(case: str, history: History) -> None:
    """Only same-subject marketing texts in the last 24 h count."""
    assert Verdict.ALLOWED == ask("+1305", local(NY, 2027, 3, 10, 13, 0), history=history).verdict


def test_no_cap_outside_the_capping_states() -> None:
    """New York has no same-subject limit: the fourth send goes."""
    history = History(subject=sends(WED_10, WED_11, WED_12))
    assert Verdict.ALLOWED == ask("+1212", local(NY, 2027, 3, 10, 13, 0), history=history).verdict


def test_florida_cap_applies_by_area_code_presumption() -> None:
    """A 305 number recorded in New York is still capped (Fla. Stat. 501.059)."""
    history = History(subject=sends(WED_10, WED_11, WED_12))
    answer = ask("+1305|US-NY|", local(NY, 2027, 3, 10, 13, 0), history=history)
    assert Verdict.DEFERRED == answer.verdict


@pytest.mark.parametrize("key", ["+1405", "+1410"])
def test_oklahoma_and_maryland_cap_the_fourth_send(key: str) -> None:
    """The same three-per-24-hours limit in Oklahoma and Maryland."""
    history = History(subject=sends(WED_10, WED_11, WED_12))
    answer = ask(key, local(NY, 2027, 3, 10, 13, 0), history=history)
    assert (Verdict.DEFERRED, WED_10 + timedelta(hours=24)) == (answer.verdict, answer.not_before)


def care(at: datetime, *earlier: datetime, message: MessageFacts | None = GOOD_MESSAGE) -> Answer:
    history = History(sender=sends(*earlier, category=CARE))
    return ask("+1212", at, CARE, consent=None, history=history, message=message)


def test_healthcare_one_a_day() -> None:
    """After one exempt text today, the next waits for tomorrow's window (08:00)."""
    answer = care(local(NY, 2027, 3, 10, 15, 0), local(NY, 2027, 3, 10, 9, 0))
    assert (Verdict.DEFERRED, local(NY, 2027, 3, 11, 8, 0)) == (answer.verdict, answer.not_before)


def test_healthcare_day_edge_is_local_midnight() -> None:
    """A text at 20:50 yesterday does not count today; one at 00:00 today does."""
    assert (
        Verdict.ALLOWED
        == care(local(NY, 2027, 3, 11, 8, 0), local(NY, 2027, 3, 10, 20, 50)).verdict
    )
    blocked = care(local(NY, 2027, 3, 11, 8, 0), local(NY, 2027, 3, 11, 0, 0))
    assert Verdict.DEFERRED == blocked.verdict


def test_healthcare_three_a_week() -> None:
    """Mon, Tue, Wed used the week: Thursday waits for Monday 08:00 (ISO week)."""
    week = [local(NY, 2027, 3, d, 9, 0) for d in (8, 9, 10)]
    answer = care(local(NY, 2027, 3, 11, 9, 0), *week)
    assert (Verdict.DEFERRED, local(NY, 2027, 3, 15, 8, 0)) == (answer.verdict, answer.not_before)


def test_healthcare_week_edge_is_sunday_to_monday() -> None:
    """Thu, Fri, Sat fill the week: Sunday waits, Monday starts a new week."""
    week = [local(NY, 2027, 3, d, 9, 0) for d in (11, 12, 13)]
    sunday = care(local(NY, 2027, 3, 14, 9, 0), *week)
    assert (Verdict.DEFERRED, local(NY, 2027, 3, 15, 8, 0)) == (sunday.verdict, sunday.not_before)
    assert Verdict.ALLOWED == care(local(NY, 2027, 3, 15, 9, 0), *week).verdict


def test_healthcare_two_this_week_third_allowed() -> None:
    """Two in the week so far: the third (on a new day) goes."""
    answer = care(
        local(NY, 2027, 3, 10, 9, 0), local(NY, 2027, 3, 8, 9, 0), local(NY, 2027, 3, 9, 9, 0)
    )
    assert Verdict.ALLOWED == answer.verdict


@pytest.mark.parametrize(
    ("case", "message", "expected"),
    [
        ("161 characters", MessageFacts(161, True, True, True), "more than 160"),
        ("160 characters", MessageFacts(160, True, True, True), None),
        ("charged", MessageFacts(100, False, True, True), "free to the recipient"),
        ("no provider", MessageFacts(100, True, False, True), "name the provider"),
        ("no STOP", MessageFacts(100, True, True, False), "STOP"),
        ("no facts", None, "facts are needed"),
    ],
)
def test_healthcare_content_conditions(
    case: str, message: MessageFacts | None, expected: str | None
) -> None:
    """Each condition of the exemption refuses for good when unmet."""
    answer = care(local(NY, 2027, 3, 10, 10, 0), message=message)
    if expected is None:
        assert Verdict.ALLOWED == answer.verdict
    else:
        assert Verdict.REFUSED == answer.verdict
        assert expected in answer.reason


def test_healthcare_exemption_is_us_sms_only() -> None:
    """Not for a UK number, not by email."""
    at = local(NY, 2027, 3, 10, 10, 0)
    uk = ask("+44", at, CARE, consent=None, message=GOOD_MESSAGE)
    assert (Verdict.REFUSED, "for US only") == (uk.verdict, uk.reason[-11:])
    mail = ask("@", at, CARE, channel=Channel.EMAIL, consent=EXPRESS, message=GOOD_MESSAGE)
    assert Verdict.REFUSED == mail.verdict
    assert "cannot be sent by email" in mail.reason
