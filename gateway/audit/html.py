"""The compliance report as one self-contained HTML page (pure layer) that prints well.

No script, no web font, nothing fetched: the charts are inline SVG (gateway/audit/svg.py), the
style is inline, and a Content-Security-Policy forbids loading anything, so the file opens the
same offline, in a year, and in headless Chromium for ``--format pdf``. Print rules keep table
headers on every page and charts whole. Every value is escaped: texts people sent appear in
the review queue.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

from gateway.audit import svg

_CSS = """
body{font:13px/1.45 -apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#111;margin:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #999;
break-after:avoid}h3{font-size:14px;margin:16px 0 6px}
table{border-collapse:collapse;width:100%;margin:6px 0 12px;font-size:12px}
th,td{border:1px solid #bbb;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#eef1f5}thead{display:table-header-group}tr{break-inside:avoid}
.ok{color:#1e6b1e;font-weight:bold}.bad{color:#b00000;font-weight:bold}
.meta td:first-child{width:28%;font-weight:bold}.mono{font-family:monospace;word-break:break-all}
figure.chart{margin:8px 0 16px;break-inside:avoid}figcaption{font-size:11px;color:#444}
svg{max-width:100%;height:auto}
@page{size:A4;margin:14mm}
@media print{body{margin:0}h2{break-before:auto}}
"""


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return escape(", ".join(str(v) for v in value))
    if isinstance(value, dict):
        return escape(", ".join(f"{k}: {v}" for k, v in value.items()))
    return escape(str(value))


def _table(columns: Sequence[tuple[str, str]], rows: Iterable[Mapping[str, Any]]) -> str:
    rows = list(rows)
    if not rows:
        return "<p><em>None.</em></p>"
    head = "".join(f"<th>{escape(label)}</th>" for label, _ in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(row.get(key))}</td>" for _, key in columns) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _meta(pairs: Sequence[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><td>{escape(k)}</td><td>{_cell(v)}</td></tr>" for k, v in pairs)
    return f'<table class="meta"><tbody>{body}</tbody></table>'


def _status(ok: bool, good: str, bad: str) -> str:
    return (
        f'<span class="ok">{escape(good)}</span>'
        if ok
        else f'<span class="bad">{escape(bad)}</span>'
    )


def duration(seconds: float | None) -> str:
    """``seconds`` in words an auditor reads at a glance: "4 min 12 s", "3 d 2 h"."""
    if seconds is None:
        return ""
    whole = int(seconds)
    if whole < 60:
        return f"{seconds:g} s"
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s"


def _deadlines(part: Mapping[str, Any]) -> list[str]:
    """The opt-out deadlines' summary (gateway/audit/deadlines.py); each opt-out's times
    are in the JSON document."""
    names = {
        "sms_confirmation": "SMS confirmation",
        "one_click": "One-click unsubscribe",
        "ten_business_days": "Opt-out honoured",
    }
    measures = {"confirmation_sent": "confirmation left", "took_effect": "opt-out took effect"}
    rows = [
        {
            **kind,
            "name": names[name],
            "measures": measures[kind["measures"]],
            "worst": duration(kind["worst_seconds"])
            + ("" if kind["worst_finished"] in (None, True) else " (not yet)"),
        }
        for name, kind in part["summary"].items()
    ]
    return [
        "<h2>11. Opt-out deadlines</h2>",
        f"<p>{part['opt_outs']} opt-outs in the period, each measured from its receipt"
        f" against every deadline that applies to it, as of {escape(str(part['as_of']))}."
        f" Business days are counted in {escape(part['zone'])}, skipping weekends and the"
        f" {escape(part['holiday_calendar'])} holiday calendar. {part['imported_not_measured']}"
        " imported opt-outs were honoured by the system they came from and are not measured."
        " Every opt-out's receipt, effect and confirmation times are in the JSON report.</p>",
        _table(
            [
                ("Deadline", "name"),
                ("Length", "length"),
                ("Source", "source"),
                ("Measured to", "measures"),
                ("Applies to", "applies_to"),
                ("Met", "met"),
                ("Missed", "missed"),
                ("Open", "open"),
                ("Longest", "worst"),
            ],
            rows,
        ),
        "<h3>Every deadline missed or still open</h3>",
        _table(
            [
                ("Inbound", "inbound_id"),
                ("Contact", "contact_id"),
                ("Address", "contact"),
                ("Sender", "sender"),
                ("Deadline", "name"),
                ("Received", "received_at"),
                ("Due", "due"),
                ("Done", "at"),
                ("Status", "status"),
            ],
            [
                {**item, **deadline, "name": names[deadline["kind"]]}
                for item in part["items"]
                for deadline in item["deadlines"]
                if deadline["status"] != "met"
            ],
        ),
    ]


def render_html(report: Mapping[str, Any]) -> str:
    """The page for ``report`` (gateway/audit/report.py)."""
    window = report["window"]
    period = f"{window['from'][:10]} to {window['to'][:10]} (UTC, end exclusive)"
    dated = f"Period {period}; generated {report['generated_at']}"
    findings = report["findings"]
    changes = report["consent_changes"]
    sms = report["sms_opt_out_confirmations"]
    email = report["email_unsubscribes"]
    sends = report["sends_to_people_not_allowed"]
    reviews = report["review_queue"]
    doi = report["double_opt_in"]
    missing = report["missing_evidence"]
    chain = report["chain"]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none';"
        " style-src 'unsafe-inline'; img-src data:\">",
        f"<title>Consent audit report, {escape(period)}</title><style>{_CSS}</style></head><body>",
        "<h1>Consent audit report</h1>",
        _meta(
            [
                ("Sender", report["sender"] or "all senders"),
                ("Period", period),
                ("Generated", report["generated_at"]),
                ("Consent changes", changes["total"]),
                ("Findings", len(findings)),
                ("Ledger chain", "verified" if chain["ok"] else "DOES NOT VERIFY"),
                ("Head", f"seq {chain['head_seq']}, {chain['head_hash']}"),
            ]
        ),
        "<h2>1. Findings</h2>",
        "<p>"
        + _status(
            not findings,
            "No rule was breached in this period.",
            f"{len(findings)} finding(s): each is listed below and in its section.",
        )
        + "</p>",
        _table(
            [
                ("Kind", "kind"),
                ("Contact", "contact_id"),
                ("Address", "contact"),
                ("Sender", "sender"),
                ("When", "sent_at"),
                ("Seconds", "seconds"),
                ("Source", "source"),
                ("State then", "state"),
            ],
            findings,
        ),
        "<h2>2. Consent changes over time</h2>",
        f"<p>{changes['total']} ledger events in the period.</p>",
        svg.stacked_bars(
            "Consent changes per day by channel", dated, changes["days"], changes["by_channel"]
        ),
        svg.stacked_bars(
            "Consent changes per day by method", dated, changes["days"], changes["by_method"]
        ),
        svg.stacked_bars(
            "Consent changes per day by program", dated, changes["days"], changes["by_program"]
        ),
        svg.stacked_bars(
            "Consent changes per day by action", dated, changes["days"], changes["by_action"]
        ),
        "<h2>3. SMS opt-outs and their confirmation</h2>",
        "<p>One confirmation text, presumed within consent when sent within five minutes of"
        " the opt-out (FCC 12-143, para. 11; 47 CFR 64.1200(a)(12)). Measured from receipt at"
        " the gateway to the confirmation leaving.</p>",
        _meta(
            [
                ("Opt-outs", sms["opt_outs"]),
                ("Confirmations sent", sms["confirmed"]),
                (
                    "No confirmation queued (provider's own, erasure, expiry, import)",
                    sms["not_queued"],
                ),
                ("Median seconds", sms["median_seconds"]),
                ("Slowest seconds", sms["slowest_seconds"]),
                ("Later than five minutes", len(sms["late"])),
            ]
        ),
        svg.histogram(
            "Time from SMS opt-out to its confirmation",
            dated,
            [(b["bucket"], b["count"]) for b in sms["distribution"]],
            {"> 5 min"},
        ),
        "<h3>Every confirmation later than five minutes</h3>",
        _table(
            [
                ("Inbound", "inbound_id"),
                ("Contact", "contact_id"),
                ("Address", "contact"),
                ("Sender", "sender"),
                ("Received", "received_at"),
                ("Confirmed", "sent_at"),
                ("Seconds", "seconds"),
                ("Outbox", "outbox_id"),
            ],
            sms["late"],
        ),
        "<h3>Confirmations not sent</h3>",
        _table(
            [
                ("Inbound", "inbound_id"),
                ("Contact", "contact_id"),
                ("Sender", "sender"),
                ("Received", "received_at"),
                ("Outbox", "outbox_id"),
                ("Status", "status"),
            ],
            sms["unsent"],
        ),
        "<h2>4. Email unsubscribes</h2>",
        "<p>Honoured within 10 business days (15 U.S.C. 7704(a)(4)(A)) and, for bulk senders to"
        " Gmail, within 48 hours. Measured from the request to the opt-out being recorded.</p>",
        _meta(
            [
                ("Requests", email["requests"]),
                ("Within 48 hours", email["within_48_hours"]),
                ("Within 10 business days", email["within_10_business_days"]),
                ("Imported (honoured by the system they came from)", email["imported"]),
            ]
        ),
        _table(
            [
                ("Contact", "contact_id"),
                ("Address", "contact"),
                ("Sender", "sender"),
                ("Requested", "requested_at"),
                ("Recorded", "recorded_at"),
                ("Hours", "hours"),
                ("Rule missed", "rule"),
            ],
            email["late"],
        ),
        "<h2>5. Sends to people who were not allowed</h2>",
        f"<p>Zero expected. {sends['outbox_sends']} messages left our outbox and"
        f" {sends['reported_sends']} sends were reported by outside senders in the period;"
        " each send below went to someone whose last recorded state at that moment was not"
        " opted in.</p>",
        "<h3>From our outbox</h3>",
        _table(
            [
                ("Outbox", "outbox_id"),
                ("Contact", "contact_id"),
                ("Address", "contact"),
                ("Sender", "sender"),
                ("Program", "program"),
                ("Kind", "kind"),
                ("Sent", "sent_at"),
                ("State", "state"),
                ("Since", "state_since"),
                ("Ledger seq", "state_seq"),
            ],
            sends["outbox"],
        ),
        "<h3>Reported by outside senders (POST /v1/sends)</h3>",
        _table(
            [
                ("Report", "report_id"),
                ("Message id", "message_id"),
                ("Contact", "contact_id"),
                ("Address", "contact"),
                ("Sender", "sender"),
                ("Program", "program"),
                ("Sent", "sent_at"),
                ("State", "state"),
                ("Since", "state_since"),
                ("Ledger seq", "state_seq"),
                ("Gate answer given", "gate"),
                ("Reported by", "reported_by"),
            ],
            sends["reported"],
        ),
        "<h2>6. Texts flagged for review and what was decided</h2>",
        _meta(
            [
                ("Flagged", reviews["flagged"]),
                ("Confirmed", reviews["confirmed"]),
                ("Reversed (finding recorded; nobody re-subscribed)", reviews["reversed"]),
                ("Open", reviews["open"]),
            ]
        ),
        _table(
            [
                ("Inbound", "inbound_id"),
                ("Contact", "contact_id"),
                ("Sender", "sender"),
                ("Received", "received_at"),
                ("Text", "text"),
                ("Read as", "intent"),
                ("Match", "match"),
                ("Decision", "decision"),
                ("Note", "note"),
                ("By", "decided_by"),
                ("At", "decided_at"),
            ],
            reviews["items"],
        ),
        "<h2>7. Double opt-ins</h2>",
        f"<p>{doi['confirmed']} confirmed, {len(doi['expired'])} expired unconfirmed,"
        f" {doi['withdrawn']} withdrawn, {len(doi['pending_at_end'])} still pending at the"
        " end of the period.</p>",
        "<h3>Pending at the end of the period</h3>",
        _table(
            [
                ("Contact", "contact_id"),
                ("Address", "contact"),
                ("Sender", "sender"),
                ("Program", "program"),
                ("Since", "since"),
                ("Days", "days_pending"),
            ],
            doi["pending_at_end"],
        ),
        "<h3>Expired</h3>",
        _table(
            [
                ("Ledger seq", "seq"),
                ("Contact", "contact_id"),
                ("Sender", "sender"),
                ("Program", "program"),
                ("Expired", "expired_at"),
            ],
            doi["expired"],
        ),
        "<h2>8. Consents missing evidence</h2>",
        f"<p>{missing['total']} opt-ins lack evidence their method requires (GDPR art. 7(1));"
        f" {missing['redacted']} had their evidence removed by an erasure (its digest stays in"
        " the chain).</p>",
        _table(
            [
                ("Ledger seq", "seq"),
                ("Contact", "contact_id"),
                ("Sender", "sender"),
                ("Program", "program"),
                ("Method", "method"),
                ("At", "at"),
                ("Missing", "missing"),
            ],
            missing["listed"],
        ),
        "<h2>9. Disclosure versions in use</h2>",
        _table(
            [
                ("Version", "version"),
                ("Sender", "sender"),
                ("Program", "program"),
                ("Method", "method"),
                ("Consents", "consents"),
                ("First seen", "first_seen"),
                ("Last seen", "last_seen"),
            ],
            report["disclosure_versions"],
        ),
        "<h2>10. Ledger chain</h2>",
        "<p>"
        + _status(
            chain["ok"],
            "Every hash re-derived from the first event to the head.",
            "The chain does not verify.",
        )
        + "</p>",
        _meta(
            [
                ("Events", chain["events"]),
                ("Evidence redacted by erasure", chain["redacted"]),
                ("Head seq", chain["head_seq"]),
            ]
        ),
        f"<p>Head hash <span class='mono'>{escape(str(chain['head_hash']))}</span>, taken"
        f" {escape(str(chain['verified_at']))}.</p>",
        _table([("Problem", "problem")], [{"problem": p} for p in chain["problems"]]),
        *_deadlines(report["opt_out_deadlines"]),
        "</body></html>",
    ]
    return "".join(parts)
