"""The FCC "revoke-all" switch (pure layer): when does one opt-out end every robotext?

47 CFR 64.1200(a)(10) makes a revocation made in reply to one kind of message apply to all
of the caller's robocalls and robotexts, on unrelated matters too. The FCC delayed that
part twice: to 2026-04-11 (order of 2025-04-07) and to 2027-01-31 (Consumer and
Governmental Affairs Bureau order DA 26-12 of 2026-01-06). The rest of the rule (any
reasonable means, ten business days) is in force already.

The gateway setting ``revoke_all`` takes:

- ``"auto"`` (the default): in force from 2027-01-31, 00:00 in Washington (America/New_York);
- ``"on"``: in force now, ahead of the date;
- a date ``"YYYY-MM-DD"`` no later than 2027-01-31: in force from that day.

There is no "off" and no later date: an operator may bring the rule forward, never push it
back. A further FCC delay is a change to ``REVOKE_ALL_FROM`` here, with its citation.
What the switch changes (a STOP to one program stops every program of the sender) is the
consent table's business; this module only says whether it is in force.
"""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

__all__ = ["REVOKE_ALL_FROM", "parse_revoke_all", "revoke_all_in_force"]

REVOKE_ALL_FROM = date(2027, 1, 31)
_ZONE = ZoneInfo("America/New_York")


def parse_revoke_all(setting: str) -> date | None:
    """The first day revoke-all is in force under ``setting``; None means always.

    Raises ``ValueError`` for anything but "auto", "on" or a date on or before 2027-01-31.
    """
    if setting == "auto":
        return REVOKE_ALL_FROM
    if setting == "on":
        return None
    try:
        day = date.fromisoformat(setting)
    except ValueError:
        raise ValueError(
            f'revoke_all must be "auto", "on" or a date like 2026-12-01, not {setting!r}'
        ) from None
    if day > REVOKE_ALL_FROM:
        raise ValueError(
            f"revoke_all {day} is after {REVOKE_ALL_FROM}, the FCC's date (DA 26-12): "
            "the rule may be brought forward, never pushed back"
        )
    return day


def revoke_all_in_force(at: datetime, setting: str = "auto") -> bool:
    """Whether an opt-out at ``at`` (aware) revokes consent for every message of the caller."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("revoke_all_in_force needs an aware datetime")
    start = parse_revoke_all(setting)
    return start is None or at >= datetime.combine(start, time(0), _ZONE)
