"""The report's opt-out deadlines (pure layer): each opt-out's times against its deadlines.

For every opt-out of the period: when it arrived (the inbound event's ``received_at``), when
it took effect (the first ledger row it wrote, committed with the consent change), when its
one confirmation left (the ``opt_out`` outbox row linked by ``inbound_id``), and each
deadline that applies, computed by ``rules.deadlines`` (docs/rules.md, "Deadlines after an
opt-out"):

- ``sms_confirmation``: five minutes from receipt to the confirmation leaving, for an SMS
  opt-out that queued one (47 CFR 64.1200(a)(12)). An opt-out that needs none (the person
  was already out of everything, the provider sent its own, an erasure) has no such deadline.
- ``one_click``: two days from receipt to the opt-out taking effect, for an RFC 8058
  one-click unsubscribe (method ``one_click``; Gmail's and Yahoo's bulk-sender rules).
- ``ten_business_days``: ten business days in the sender's zone, skipping the federal
  holiday calendar, from receipt to the opt-out taking effect, for every opt-out (47 CFR
  64.1200(a)(10); 15 U.S.C. 7704(a)(4)(A)).

A deadline is ``met`` when its event came at or before the due instant, ``missed`` when it
came later or has not come and the report's snapshot is past the due instant (or can never
come: a confirmation that failed or was cancelled), else ``open``. Seconds run from receipt
to the event, or to the snapshot when the event has not come. Imports are counted, not
measured: the system they came from honoured them (as ``report._unsubscribes`` does).
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from types import MappingProxyType
from typing import Any

from gateway.logs import mask_address
from gateway.messages import Method
from rules.deadlines import (
    REVOCATION_BUSINESS_DAYS,
    confirmation_deadline,
    one_click_deadline,
    revocation_deadline,
)

SMS_CONFIRMATION = "sms_confirmation"
ONE_CLICK = "one_click"
TEN_BUSINESS_DAYS = "ten_business_days"
KINDS = (SMS_CONFIRMATION, ONE_CLICK, TEN_BUSINESS_DAYS)
STATUSES = ("met", "missed", "open")

# What each kind is, for the document's reader: its length, its source, what it measures.
RULES: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        SMS_CONFIRMATION: {
            "length": "5 minutes",
            "source": "47 CFR 64.1200(a)(12)",
            "measures": "confirmation_sent",
        },
        ONE_CLICK: {
            "length": "2 days",
            "source": "Gmail and Yahoo bulk-sender requirements (February 2024)",
            "measures": "took_effect",
        },
        TEN_BUSINESS_DAYS: {
            "length": f"{REVOCATION_BUSINESS_DAYS} business days",
            "source": "47 CFR 64.1200(a)(10); 15 U.S.C. 7704(a)(4)(A)",
            "measures": "took_effect",
        },
    }
)

# Methods whose email opt-out is an RFC 8058 one-click POST (gateway/edges/http/unsubscribe.py).
ONE_CLICK_METHODS = frozenset({Method.ONE_CLICK.value})
# Brought from another system, which honoured it (gateway/app/consent_import.py).
NOT_MEASURED_METHODS = frozenset({Method.IMPORT.value})
# An outbox status from which the confirmation can never leave (gateway/outbox.py).
_NEVER_LEAVES = frozenset({"failed", "cancelled"})


@dataclass(frozen=True, slots=True)
class BusinessCalendar:
    """How business days are counted: the holidays skipped and the sender's zone."""

    holidays: Container[date]
    holiday_calendar: str  # its name in the rule data (config/rules/holidays.toml)
    zone: str


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _deadline(
    kind: str,
    received: datetime,
    due: datetime,
    at: datetime | None,
    as_of: datetime,
    *,
    never: bool = False,
) -> dict[str, Any]:
    if at is not None:
        status = "met" if at <= due else "missed"
    else:
        status = "missed" if never or as_of > due else "open"
    return {
        "kind": kind,
        "due": _iso(due),
        "measures": RULES[kind]["measures"],
        "at": _iso(at),
        "seconds": round(((at or as_of) - received).total_seconds(), 3),
        "status": status,
    }


def _confirmation(row: Mapping[str, Any]) -> dict[str, Any]:
    if row["outbox_id"] is None:
        return {"status": "none", "outbox_id": None, "queued_at": None, "sent_at": None}
    return {
        "status": row["status"],
        "outbox_id": row["outbox_id"],
        "queued_at": _iso(row["queued_at"]),
        "sent_at": _iso(row["sent_at"]),
    }


def _one(row: Mapping[str, Any], calendar: BusinessCalendar, as_of: datetime) -> dict[str, Any]:
    received, effect = row["received_at"], row["took_effect_at"]
    deadlines = []
    if row["channel"] == "sms" and row["outbox_id"] is not None:
        due = confirmation_deadline(received)
        never = row["status"] in _NEVER_LEAVES
        deadlines.append(
            _deadline(SMS_CONFIRMATION, received, due, row["sent_at"], as_of, never=never)
        )
    if row["channel"] == "email" and row["method"] in ONE_CLICK_METHODS:
        deadlines.append(
            _deadline(ONE_CLICK, received, one_click_deadline(received), effect, as_of)
        )
    due = revocation_deadline(received, calendar.holidays, calendar.zone)
    deadlines.append(_deadline(TEN_BUSINESS_DAYS, received, due, effect, as_of))
    return {
        "inbound_id": row["inbound_id"],
        "contact_id": row["contact_id"],
        "contact": mask_address(row["address"] or ""),
        "channel": row["channel"],
        "sender": row["sender"],
        "programs": list(row["programs"]),
        "method": row["method"],
        "received_at": _iso(received),
        "took_effect_at": _iso(effect),
        "confirmation": _confirmation(row),
        "deadlines": deadlines,
    }


def _summary(items: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in KINDS:
        found = [(d, i) for i in items for d in i["deadlines"] if d["kind"] == kind]
        counts = {s: sum(1 for d, _ in found if d["status"] == s) for s in STATUSES}
        # The longest time, finished or not; ties go to the earliest opt-out.
        worst = max(found, key=lambda p: (p[0]["seconds"], -p[1]["inbound_id"]), default=None)
        out[kind] = {
            **RULES[kind],
            "applies_to": len(found),
            **counts,
            "worst_seconds": None if worst is None else worst[0]["seconds"],
            "worst_inbound_id": None if worst is None else worst[1]["inbound_id"],
            "worst_finished": None if worst is None else worst[0]["at"] is not None,
        }
    return out


def build_deadlines(
    rows: list[Mapping[str, Any]], calendar: BusinessCalendar, as_of: datetime
) -> dict[str, Any]:
    """The report's ``opt_out_deadlines`` part from ``audit_queries``' ``opt_out_times`` rows,
    judged at ``as_of`` (the snapshot's time)."""
    measured = [r for r in rows if r["method"] not in NOT_MEASURED_METHODS]
    items = [_one(r, calendar, as_of) for r in measured]
    return {
        "as_of": _iso(as_of),
        "zone": calendar.zone,
        "holiday_calendar": calendar.holiday_calendar,
        "opt_outs": len(items),
        "imported_not_measured": len(rows) - len(measured),
        "summary": _summary(items),
        "items": items,
    }
