"""The compliance report (pure layer): the rows of one snapshot in, one JSON document out.

``build_report`` is deterministic: the same rows give the same document, apart from
``generated_at`` (the snapshot's time, which is also when the chain was verified) and what
is judged at that time (an opt-out deadline whose event has not come yet: its seconds so far
and whether it is still open), so two reports of unchanged data can be compared byte for
byte. The HTML (gateway/audit/html.py)
is drawn from this document only.

People are named by contact id and a masked address (gateway/logs.py): the report is filed
and passed around; the full record of one person is their receipt (docs/receipts.md).
Findings are the rule breaches an auditor must see, every one listed: a late or missing SMS
opt-out confirmation, a late email unsubscribe, a send to someone who was not allowed at that
moment (from our outbox, or reported by an outside sender), a chain that does not verify.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from typing import Any

from gateway.audit import rules
from gateway.audit.deadlines import BusinessCalendar, build_deadlines
from gateway.logs import mask_address

FORMAT = "consent-audit-report/1"
_FINDING_ORDER = (
    "chain_broken",
    "late_confirmation",
    "missing_confirmation",
    "late_unsubscribe",
    "send_after_opt_out",
    "send_without_consent",
)


def _iso(value: datetime | date | None) -> str | None:
    return None if value is None else value.isoformat()


def _seconds(later: datetime, earlier: datetime) -> float:
    return round((later - earlier).total_seconds(), 3)


def _who(row: Mapping[str, Any], field: str = "address") -> dict[str, Any]:
    address = row.get(field) or ""
    return {"contact_id": row.get("contact_id"), "contact": mask_address(address)}


def _days(start: datetime, end: datetime) -> list[date]:
    first, last = start.date(), (end - timedelta(microseconds=1)).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _series(
    rows: Iterable[Mapping[str, Any]], days: list[date], key: str | tuple[str, str]
) -> dict[str, list[int]]:
    index = {d: i for i, d in enumerate(days)}
    out: dict[str, list[int]] = {}
    for r in rows:
        name = f"{r[key[0]]}/{r[key[1]]}" if isinstance(key, tuple) else str(r[key])
        counts = out.setdefault(name, [0] * len(days))
        if r["day"] in index:
            counts[index[r["day"]]] += r["n"]
    return dict(sorted(out.items()))


def _changes(rows: list[dict[str, Any]], days: list[date]) -> dict[str, Any]:
    return {
        "days": [d.isoformat() for d in days],
        "total": sum(r["n"] for r in rows),
        "by_action": _series(rows, days, "action"),
        "by_channel": _series(rows, days, "channel"),
        "by_method": _series(rows, days, "method"),
        "by_program": _series(rows, days, ("sender", "program")),
    }


def _confirmations(rows: list[dict[str, Any]], findings: list[dict[str, Any]]) -> dict[str, Any]:
    limit = rules.SMS_CONFIRMATION_SECONDS
    buckets = {label: 0 for label, _ in rules.CONFIRMATION_BUCKETS}
    late, unsent, times = [], [], []
    not_queued = 0
    for r in rows:
        if r["outbox_id"] is None:
            not_queued += 1  # replies suppressed: the provider's own, erasure, expiry, import
            continue
        base = {
            "inbound_id": r["inbound_id"],
            **_who(r),
            "sender": r["sender"],
            "received_at": _iso(r["received_at"]),
            "outbox_id": r["outbox_id"],
            "status": r["status"],
        }
        if r["sent_at"] is None:
            unsent.append(base)
            if r["status"] in ("failed", "cancelled"):
                findings.append({"kind": "missing_confirmation", **base})
            continue
        seconds = _seconds(r["sent_at"], r["received_at"])
        times.append(seconds)
        for label, bound in rules.CONFIRMATION_BUCKETS:
            if seconds <= bound:
                buckets[label] += 1
                break
        if seconds > limit:
            item = {**base, "sent_at": _iso(r["sent_at"]), "seconds": seconds}
            late.append(item)
            findings.append({"kind": "late_confirmation", **item})
    times.sort()
    return {
        "target_seconds": limit,
        "opt_outs": len(rows),
        "confirmed": len(times),
        "not_queued": not_queued,
        "median_seconds": times[len(times) // 2] if times else None,
        "slowest_seconds": times[-1] if times else None,
        "distribution": [{"bucket": k, "count": v} for k, v in buckets.items()],
        "late": late,
        "unsent": unsent,
    }


def _unsubscribes(rows: list[dict[str, Any]], findings: list[dict[str, Any]]) -> dict[str, Any]:
    hours = timedelta(hours=rules.EMAIL_UNSUBSCRIBE_HOURS)
    within_hours = within_days = imported = 0
    late = []
    for r in rows:
        if r["method"] == "import":
            imported += 1  # honoured by the system it came from; recorded here later
            continue
        requested, recorded = r["requested_at"], r["recorded_at"]
        deadline = rules.add_business_days(requested, rules.EMAIL_UNSUBSCRIBE_BUSINESS_DAYS)
        in_hours, in_days = recorded - requested <= hours, recorded <= deadline
        within_hours += in_hours
        within_days += in_days
        if not in_hours:
            item = {
                **_who(r),
                "sender": r["sender"],
                "programs": r["programs"],
                "method": r["method"],
                "requested_at": _iso(requested),
                "recorded_at": _iso(recorded),
                "hours": round((recorded - requested).total_seconds() / 3600, 2),
                "rule": "48 hours" if in_days else "10 business days",
            }
            late.append(item)
            findings.append({"kind": "late_unsubscribe", **item})
    return {
        "requests": len(rows) - imported,
        "imported": imported,
        "within_48_hours": within_hours,
        "within_10_business_days": within_days,
        "late": late,
    }


def _not_allowed(data: Mapping[str, Any], findings: list[dict[str, Any]]) -> dict[str, Any]:
    outbox = []
    for r in data["outbox_after"]:
        item = {
            "source": "outbox",
            "outbox_id": r["id"],
            **_who(r),
            "sender": r["sender"],
            "program": r["program"],
            "channel": r["channel"],
            "kind": r["kind"],
            "sent_at": _iso(r["sent_at"]),
            "state": r["state"],
            "state_since": _iso(r["state_since"]),
            "state_seq": r["state_seq"],
            "state_method": r["state_method"],
        }
        outbox.append(item)
        kind = "send_after_opt_out" if r["state"] == "opted_out" else "send_without_consent"
        findings.append({"kind": kind, **item})
    reported = []
    for r in data["reported"]:
        item = {
            "source": "reported",
            "report_id": r["id"],
            "message_id": r["message_id"],
            "contact_id": r["contact_id"],
            "contact": mask_address(r["recipient"]),
            "sender": r["sender"],
            "program": r["program"],
            "channel": r["channel"],
            "sent_at": _iso(r["sent_at"]),
            "reported_at": _iso(r["reported_at"]),
            "reported_by": r["api_key"],
            "state": r["state"],
            "state_since": _iso(r["state_since"]),
            "state_seq": r["state_seq"],
            "state_method": r["state_method"],
            "gate": None
            if r["decision_id"] is None
            else {
                "decision_id": r["decision_id"],
                "index": r["decision_index"],
                "found": r["decision_found"],
                "decided_at": _iso(r["decided_at"]),
                "answer": r["gate_answer"],
                "same_scope": (r["decision_sender"], r["decision_program"])
                == (r["sender"], r["program"]),
            },
        }
        reported.append(item)
        kind = "send_after_opt_out" if r["state"] == "opted_out" else "send_without_consent"
        findings.append({"kind": kind, **item})
    return {
        "outbox_sends": data["outbox_sends"],
        "reported_sends": data["reported_total"],
        "outbox": outbox,
        "reported": reported,
    }


def _reviews(rows: list[dict[str, Any]]) -> dict[str, Any]:
    items = [
        {
            "inbound_id": r["inbound_id"],
            **_who(r),
            "sender": r["sender"],
            "channel": r["channel"],
            "received_at": _iso(r["received_at"]),
            "intent": r["intent"],
            "match": r["match"],
            "text": r["body"][:160],
            "ledger_seqs": list(r["ledger_seqs"]),
            "decision": r["decision"] or "open",
            "note": r["note"],
            "decided_by": r["actor"],
            "decided_at": _iso(r["decided_at"]),
        }
        for r in rows
    ]
    count = {k: sum(1 for i in items if i["decision"] == k) for k in ("confirmed", "reversed")}
    return {"flagged": len(items), **count, "open": len(items) - sum(count.values()),
            "items": items}  # fmt: skip


def _double_opt_in(data: Mapping[str, Any], end: datetime) -> dict[str, Any]:
    closed = data["double_opt_in_closed"]
    return {
        "pending_at_end": [
            {
                **_who(r),
                "sender": r["sender"],
                "program": r["program"],
                "channel": r["channel"],
                "since": _iso(r["since"]),
                "days_pending": (end - r["since"]).days,
            }
            for r in data["pending"]
        ],
        "confirmed": sum(1 for r in closed if r["new_state"] == "opted_in"),
        "expired": [
            {
                "seq": r["seq"],
                **_who(r),
                "sender": r["sender"],
                "program": r["program"],
                "channel": r["channel"],
                "expired_at": _iso(r["server_time"]),
            }
            for r in closed
            if r["new_state"] == "opted_out"
            and r["reason"] == "double opt-in not confirmed in time"
        ],
        "withdrawn": sum(
            1
            for r in closed
            if r["new_state"] == "opted_out"
            and r["reason"] != "double opt-in not confirmed in time"
        ),
    }


def _missing(data: Mapping[str, Any]) -> dict[str, Any]:
    rows = data["missing_evidence"]
    return {
        "total": rows[0]["total"] if rows else 0,
        "redacted": data["redacted_consents"],
        "listed": [
            {
                "seq": r["seq"],
                "contact_id": r["contact_id"],
                "sender": r["sender"],
                "program": r["program"],
                "channel": r["channel"],
                "method": r["method"],
                "at": _iso(r["server_time"]),
                "missing": list(r["missing"]),
            }
            for r in rows
        ],
    }


def build_report(
    data: Mapping[str, Any],
    start: datetime,
    end: datetime,
    sender: str | None,
    calendar: BusinessCalendar,
) -> dict[str, Any]:
    """The report document of ``[start, end)`` from ``report_data``'s rows; ``calendar``
    counts the business days of the opt-out deadlines (gateway/audit/deadlines.py)."""
    findings: list[dict[str, Any]] = []
    chain = dict(data["chain"])
    chain["verified_at"] = _iso(data["generated_at"])
    if not chain["ok"]:
        findings.append({"kind": "chain_broken", "problems": chain["problems"]})
    days = _days(start, end)
    report = {
        "format": FORMAT,
        "generated_at": _iso(data["generated_at"]),
        "window": {"from": _iso(start), "to": _iso(end), "days": len(days)},
        "sender": sender,
        "rules": {
            "sms_confirmation_seconds": rules.SMS_CONFIRMATION_SECONDS,
            "email_unsubscribe_hours": rules.EMAIL_UNSUBSCRIBE_HOURS,
            "email_unsubscribe_business_days": rules.EMAIL_UNSUBSCRIBE_BUSINESS_DAYS,
        },
        "consent_changes": _changes(data["changes"], days),
        "sms_opt_out_confirmations": _confirmations(data["sms_opt_outs"], findings),
        "email_unsubscribes": _unsubscribes(data["email_opt_outs"], findings),
        "opt_out_deadlines": build_deadlines(data["opt_out_times"], calendar, data["generated_at"]),
        "sends_to_people_not_allowed": _not_allowed(data, findings),
        "review_queue": _reviews(data["reviews"]),
        "double_opt_in": _double_opt_in(data, end),
        "missing_evidence": _missing(data),
        "disclosure_versions": [
            {
                "version": r["version"],
                "sender": r["sender"],
                "program": r["program"],
                "method": r["method"],
                "consents": r["n"],
                "first_seen": _iso(r["first_seen"]),
                "last_seen": _iso(r["last_seen"]),
            }
            for r in data["disclosures"]
        ],
        "chain": chain,
    }
    findings.sort(key=lambda f: _FINDING_ORDER.index(f["kind"]))
    report["findings"] = findings
    return report
