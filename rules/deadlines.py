"""Opt-out deadlines (pure layer): by when a confirmation goes out and an opt-out takes hold.

- Five minutes: the one confirmation text after a revocation is presumed lawful if sent
  within five minutes of the request (47 CFR 64.1200(a)(12), in force since 2024-04-04).
- Two days: Gmail's and Yahoo's bulk-sender requirements (February 2024) ask senders to
  process one-click unsubscribes within two days. A mailbox-provider policy, not law; read
  as 48 hours.
- Ten business days: the FCC's limit for honouring a revocation or do-not-call request
  (47 CFR 64.1200(a)(10) and (d)(3), in force since 2025-04-11) and CAN-SPAM's for an email
  opt-out (15 U.S.C. 7704(a)(4)(A); the issue cites 16 CFR 316.4, which is the
  sexually-explicit warning label rule; the ten days are in the statute).

Ten business days are counted in the sender's zone from the day after receipt, skipping
weekends and the holiday calendar, and end at the clock time of receipt on the tenth day:
earlier than the end of that day, so never late whichever way "of receipt" is read.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from rules.holidays import business_days_after
from rules.model import Channel

__all__ = [
    "BULK_SENDER_UNSUBSCRIBE",
    "REVOCATION_BUSINESS_DAYS",
    "SMS_CONFIRMATION",
    "OptOutDeadlines",
    "confirmation_deadline",
    "one_click_deadline",
    "opt_out_deadlines",
    "revocation_deadline",
]

SMS_CONFIRMATION = timedelta(minutes=5)
BULK_SENDER_UNSUBSCRIBE = timedelta(days=2)
REVOCATION_BUSINESS_DAYS = 10


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("deadlines need an aware datetime")
    return moment.astimezone(UTC)


def confirmation_deadline(received_at: datetime) -> datetime:
    """The last instant for the one opt-out confirmation text (47 CFR 64.1200(a)(12))."""
    return _aware(received_at) + SMS_CONFIRMATION


def one_click_deadline(received_at: datetime) -> datetime:
    """When a one-click unsubscribe must be processed by (Gmail/Yahoo, 2 days)."""
    return _aware(received_at) + BULK_SENDER_UNSUBSCRIBE


def revocation_deadline(received_at: datetime, holidays: Container[date], zone: str) -> datetime:
    """Ten business days after receipt, in ``zone`` (the sender's business time zone)."""
    tz = ZoneInfo(zone)
    local = _aware(received_at).astimezone(tz)
    last = business_days_after(local.date(), REVOCATION_BUSINESS_DAYS, holidays)
    wall = datetime.combine(last, local.time().replace(tzinfo=None), tz)
    # A clock time that the zone skips or repeats that day: the earlier reading.
    return min(wall.replace(fold=0).astimezone(UTC), wall.replace(fold=1).astimezone(UTC))


@dataclass(frozen=True, slots=True)
class OptOutDeadlines:
    """``confirm_by``: the SMS confirmation (None for email); ``honour_by``: the earliest
    deadline by which no further send may go; ``binding``: which one that is."""

    confirm_by: datetime | None
    honour_by: datetime
    binding: str


def opt_out_deadlines(
    received_at: datetime, channel: Channel, holidays: Container[date], zone: str
) -> OptOutDeadlines:
    """Every deadline an opt-out on ``channel`` starts, and the one that binds first.

    The gateway stops sends at once (docs/DESIGN.md, invariant 2); these deadlines are what
    the law allows at most, for audits and for reports on held queues.
    """
    business = revocation_deadline(received_at, holidays, zone)
    if channel is Channel.SMS:
        return OptOutDeadlines(
            confirmation_deadline(received_at), business, "47 CFR 64.1200(a)(10): 10 business days"
        )
    click = one_click_deadline(received_at)
    if click <= business:
        return OptOutDeadlines(None, click, "Gmail/Yahoo bulk-sender rules: 2 days")
    return OptOutDeadlines(None, business, "15 U.S.C. 7704(a)(4)(A): 10 business days")
