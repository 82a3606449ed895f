"""The compiled batch form: one dict lookup per recipient, the same answers as evaluate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from rules_cases import EXPRESS, NY, WRITTEN, compiled, local

from rules.location import sms_key
from rules.model import Basis, Category, Channel, Consent, History, Sent, Verdict

KEYS = [
    "+1212",
    "+1305",
    "+1850",
    "+1512",
    "+1401",
    "+1206",
    "+1812",
    "+1800",
    "+44",
    "+1305|US-NY|",
]
TIMES = [
    datetime(2027, 3, 10, 12, 0, tzinfo=UTC),
    datetime(2027, 3, 14, 7, 0, tzinfo=UTC),  # the spring DST gap in New York
    datetime(2027, 3, 7, 16, 30, tzinfo=UTC),  # a Sunday
    datetime(2027, 11, 7, 6, 30, tzinfo=UTC),  # the repeated hour
]


@pytest.mark.parametrize("at", TIMES, ids=str)
@pytest.mark.parametrize("category", [Category.MARKETING, Category.INFORMATIONAL])
def test_batch_answers_equal_evaluate(at: datetime, category: Category) -> None:
    """``answers[key]`` is what ``evaluate`` says for a person with enough consent."""
    rules = compiled()
    batch = rules.for_batch(at, category, Channel.SMS)
    for key in KEYS:
        expected = rules.evaluate(rules.location(key), at, category, Channel.SMS, WRITTEN)
        assert expected == batch.answers[key], key
        assert expected == batch.check(key, WRITTEN)


def test_batch_memo_is_filled_once_per_key() -> None:
    """The second recipient of an area code gets the same Answer object."""
    batch = compiled().for_batch(TIMES[0], Category.MARKETING, Channel.SMS)
    first = batch.answers[sms_key("+13055550100")]
    assert first is batch.answers[sms_key("+13055559999")]
    assert 1 == len(batch.answers)


def test_batch_check_refuses_weak_consent_before_the_memo() -> None:
    """Express is not written consent for marketing texts."""
    batch = compiled().for_batch(TIMES[0], Category.MARKETING, Channel.SMS)
    answer = batch.check("+1212", EXPRESS)
    assert Verdict.REFUSED == answer.verdict
    assert "express_written" in answer.reason


def test_batch_check_takes_history_into_account_where_capped() -> None:
    """Three Florida sends on the subject defer the fourth; New York is not capped."""
    at = local(NY, 2027, 3, 10, 13, 0)
    earlier = tuple(
        Sent(at - timedelta(hours=h), Channel.SMS, Category.MARKETING) for h in (3, 2, 1)
    )
    history = History(subject=earlier)
    rules = compiled()
    batch = rules.for_batch(at, Category.MARKETING, Channel.SMS)
    florida = batch.check("+1305", WRITTEN, history)
    assert florida == rules.evaluate(
        rules.location("+1305"), at, Category.MARKETING, Channel.SMS, WRITTEN, history
    )
    assert Verdict.DEFERRED == florida.verdict
    assert Verdict.ALLOWED == batch.check("+1212", WRITTEN, history).verdict
    assert "+1305" in batch.capped
    assert "+1212" not in batch.capped


def test_batch_bad_key_is_refused() -> None:
    """A key naming an unknown zone is a refusal, not an exception in the middle of a batch."""
    batch = compiled().for_batch(TIMES[0], Category.MARKETING, Channel.SMS)
    answer = batch.answers["+1212||Nowhere/City"]
    assert Verdict.REFUSED == answer.verdict
    assert "unknown location" in answer.reason


def test_batch_consent_lapse_is_per_recipient() -> None:
    """The memo is shared; consent lapses are checked per person."""
    at = datetime(2027, 3, 10, 12, 0, tzinfo=UTC)
    batch = compiled().for_batch(at, Category.MARKETING, Channel.EMAIL)
    fresh = Consent(Basis.IMPLIED_INQUIRY, at - timedelta(days=30))
    stale = Consent(Basis.IMPLIED_INQUIRY, at - timedelta(days=200))
    assert Verdict.ALLOWED == batch.check("@", fresh).verdict
    assert Verdict.REFUSED == batch.check("@", stale).verdict
