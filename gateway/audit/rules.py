"""The rules the audit report measures against (pure layer), each with where it comes from.

- SMS opt-out confirmation: one confirmation text, presumed within the consent the person
  gave when sent within five minutes of the opt-out (FCC 12-143, SoundBite declaratory
  ruling, para. 11; codified for the one confirmation text by FCC 24-24 as 47 CFR
  64.1200(a)(12)). Measured from when the gateway received the opt-out to when the
  confirmation left (outbox ``sent_at``).
- Email unsubscribe: honoured within 10 business days (CAN-SPAM, 15 U.S.C. 7704(a)(4)(A));
  bulk senders to Gmail must honour it within 48 hours (Google's email sender guidelines,
  February 2024). Measured from the request to when the opt-out was recorded, after which
  the gate refuses (docs/DESIGN.md, invariant 2). Business days skip Saturdays and Sundays
  only: public holidays are counted as business days, which makes the deadline earlier,
  never later, so nothing late is missed.
- Evidence of consent: the controller must be able to show that the person consented (GDPR
  art. 7(1)); for a web form that means the text shown, the version of the disclosure and
  where and how it was given (ICO guidance on records of consent: who, when, how, what they
  were told). ``REQUIRED_EVIDENCE`` lists what each method's opt-in must carry.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from types import MappingProxyType

SMS_CONFIRMATION_SECONDS = 300
EMAIL_UNSUBSCRIBE_HOURS = 48
EMAIL_UNSUBSCRIBE_BUSINESS_DAYS = 10

# Upper bounds (seconds) of the confirmation-time buckets the report draws.
CONFIRMATION_BUCKETS: tuple[tuple[str, float], ...] = (
    ("<= 10 s", 10),
    ("<= 30 s", 30),
    ("<= 1 min", 60),
    ("<= 2 min", 120),
    ("<= 5 min", SMS_CONFIRMATION_SECONDS),
    ("> 5 min", float("inf")),
)

# What an opt-in (or a pending sign-up) must carry in its evidence, by method; a key
# "method:source" applies to the events of that method whose evidence names that source.
REQUIRED_EVIDENCE: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        # POST /v1/consent refuses a web form without these (gateway/edges/http/consent_api.py).
        "web_form": ("checkbox_text", "disclosure_version", "ip", "user_agent", "page_url"),
        # A double opt-in confirmed by its link: which link, from where.
        "web_form:confirm_link": ("token", "ip", "user_agent"),
        "verbal": ("operator", "reference"),
        "written": ("operator", "reference"),
        # The person's own text: what they wrote and the carrier's message id.
        "sms_keyword": ("text", "dedupe_key"),
        "email_reply": ("text", "dedupe_key"),
        # Consent brought from another system (gateway/app/consent_import.py).
        "import": ("source_system", "original_time", "original_method", "disclosure"),
    }
)


def add_business_days(start: datetime, days: int) -> datetime:
    """``start`` plus ``days`` business days (Monday to Friday), keeping the time of day."""
    current = start
    left = days
    while left > 0:
        current += timedelta(days=1)
        if current.weekday() < 5:
            left -= 1
    return current
