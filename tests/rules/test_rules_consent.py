"""Consent: levels per category and channel, CASL durations, expiry lists, program checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from rules_cases import NY, WRITTEN, ask, extra_rule, local, shipped, with_rules

from rules.consent import add_months, check_program, expires_at, expiring_within
from rules.model import (
    Basis,
    Category,
    Channel,
    Consent,
    ConsentLevel,
    ProgramPolicy,
    Verdict,
    Window,
)

SINCE = datetime(2026, 8, 31, 15, 0, tzinfo=UTC)


def test_add_months_clamps_to_month_end() -> None:
    """31 August + 6 months is the last day of February; + 24 months keeps the day."""
    assert datetime(2027, 2, 28, 15, 0, tzinfo=UTC) == add_months(SINCE, 6)
    assert datetime(2028, 2, 29, 15, 0, tzinfo=UTC) == add_months(SINCE, 18)
    assert datetime(2028, 8, 31, 15, 0, tzinfo=UTC) == add_months(SINCE, 24)


@pytest.mark.parametrize(
    ("basis", "expected"),
    [
        (Basis.EXPRESS_WRITTEN, None),
        (Basis.EXPRESS, None),
        (Basis.IMPLIED_PURCHASE, datetime(2028, 8, 31, 15, 0, tzinfo=UTC)),  # CASL s.10(10)(a)
        (Basis.IMPLIED_INQUIRY, datetime(2027, 2, 28, 15, 0, tzinfo=UTC)),  # CASL s.10(10)(e)
        (Basis.SOFT_OPT_IN, None),  # PECR reg 22(3) sets no term
    ],
)
def test_durations(basis: Basis, expected: datetime | None) -> None:
    """Express never lapses; implied lasts two years or six months."""
    assert expected == expires_at(Consent(basis, SINCE), shipped().durations)


def test_evaluation_refuses_after_expiry() -> None:
    """Marketing email on inquiry consent: allowed the day before, refused at the lapse."""
    consent = Consent(Basis.IMPLIED_INQUIRY, SINCE)
    lapse = datetime(2027, 2, 28, 15, 0, tzinfo=UTC)
    before = ask("@", lapse - timedelta(seconds=1), channel=Channel.EMAIL, consent=consent)
    after = ask("@", lapse, channel=Channel.EMAIL, consent=consent)
    assert Verdict.ALLOWED == before.verdict
    assert Verdict.REFUSED == after.verdict
    assert "lapsed" in after.reason


def test_deferral_past_the_lapse_is_refused() -> None:
    """Email hours (an added rule) defer past the consent's lapse: refused, not deferred."""
    hours = Window(11 * 60, 17 * 60)
    rules = with_rules(extra_rule((hours,) * 7, channels=frozenset({Channel.EMAIL})))
    consent = Consent(Basis.IMPLIED_INQUIRY, SINCE)  # lapses 2027-02-28 10:00 ET
    where = rules.location("@")
    late = rules.evaluate(
        where, local(NY, 2027, 2, 27, 20, 0), Category.MARKETING, Channel.EMAIL, consent
    )
    assert Verdict.REFUSED == late.verdict
    assert "before the first allowed instant" in late.reason
    early = rules.evaluate(
        where, local(NY, 2027, 2, 26, 20, 0), Category.MARKETING, Channel.EMAIL, consent
    )
    assert (Verdict.DEFERRED, local(NY, 2027, 2, 27, 11, 0)) == (early.verdict, early.not_before)


@pytest.mark.parametrize(
    ("category", "channel", "basis", "refused"),
    [
        (Category.MARKETING, Channel.SMS, Basis.EXPRESS_WRITTEN, False),
        (Category.MARKETING, Channel.SMS, Basis.EXPRESS, True),  # 47 CFR 64.1200(a)(2)
        (Category.MARKETING, Channel.SMS, Basis.SOFT_OPT_IN, True),
        (Category.MARKETING, Channel.EMAIL, Basis.IMPLIED_PURCHASE, False),  # CASL s.10(9)
        (Category.MARKETING, Channel.EMAIL, Basis.SOFT_OPT_IN, False),
        (Category.INFORMATIONAL, Channel.SMS, Basis.IMPLIED_PURCHASE, True),
        (Category.INFORMATIONAL, Channel.SMS, Basis.EXPRESS, False),
        (Category.TRANSACTIONAL, Channel.SMS, Basis.EXPRESS, False),
        (Category.TRANSACTIONAL, Channel.SMS, None, True),
        (Category.TRANSACTIONAL, Channel.EMAIL, None, False),
    ],
)
def test_level_per_category_and_channel(
    category: Category, channel: Channel, basis: Basis | None, refused: bool
) -> None:
    """The record's basis must reach the category's level on the channel."""
    consent = None if basis is None else Consent(basis, datetime(2026, 11, 1, tzinfo=UTC))
    key = "@" if channel is Channel.EMAIL else "+1212"
    answer = ask(key, local(NY, 2027, 3, 10, 12, 0), category, channel=channel, consent=consent)
    assert refused == (Verdict.REFUSED == answer.verdict), answer.reason


def test_expiring_within_lists_soonest_first() -> None:
    """Only records lapsing in [at, at + days), sorted; express and lapsed ones left out."""
    at = datetime(2027, 2, 1, tzinfo=UTC)
    records = [
        ("a", Consent(Basis.IMPLIED_INQUIRY, SINCE)),  # 2027-02-28
        ("b", Consent(Basis.IMPLIED_INQUIRY, datetime(2026, 8, 10, tzinfo=UTC))),  # 2027-02-10
        ("c", Consent(Basis.EXPRESS, SINCE)),
        ("d", Consent(Basis.IMPLIED_INQUIRY, datetime(2026, 7, 1, tzinfo=UTC))),  # lapsed
        ("e", Consent(Basis.IMPLIED_PURCHASE, SINCE)),  # 2028
    ]
    found = expiring_within(records, at, 30, shipped().durations)
    assert ["b", "a"] == [e.record for e in found]
    assert datetime(2027, 2, 10, tzinfo=UTC) == found[0].expires_at


def program(categories: set[Category], level: ConsentLevel) -> ProgramPolicy:
    return ProgramPolicy("reminders", frozenset(categories), level)


@pytest.mark.parametrize(
    ("categories", "level", "category", "channel", "reason"),
    [
        ({Category.INFORMATIONAL}, ConsentLevel.EXPRESS, Category.INFORMATIONAL, Channel.SMS, None),
        (
            {Category.INFORMATIONAL},
            ConsentLevel.EXPRESS,
            Category.MARKETING,
            Channel.SMS,
            "does not send marketing",
        ),
        (
            {Category.MARKETING},
            ConsentLevel.EXPRESS,
            Category.MARKETING,
            Channel.SMS,
            'needs express_written consent; program "reminders" collects express',
        ),
        ({Category.MARKETING}, ConsentLevel.EXPRESS, Category.MARKETING, Channel.EMAIL, None),
        (
            {Category.HEALTHCARE_EXEMPT},
            ConsentLevel.NONE,
            Category.HEALTHCARE_EXEMPT,
            Channel.EMAIL,
            "cannot be sent by email",
        ),
    ],
)
def test_check_program(
    categories: set[Category],
    level: ConsentLevel,
    category: Category,
    channel: Channel,
    reason: str | None,
) -> None:
    """A send needing more than the program's sign-up collected is refused, with the reason."""
    found = check_program(program(categories, level), category, channel, shipped())
    if reason is None:
        assert found is None
    else:
        assert found is not None
        assert reason in found


def test_written_consent_constant_is_old_enough() -> None:
    """The shared record predates every case (guards the fixtures)."""
    assert WRITTEN.since < datetime(2027, 1, 1, tzinfo=UTC)
