"""Audit routes (I/O layer): the compliance report, receipts, reported sends, the review queue
and the lists out.

- ``GET /v1/admin/audit/report?from=&to=[&sender=][&format=json|html|pdf]`` (``admin``): the
  report of ``[from, to)`` (dates or ISO 8601 times, UTC when no offset; at most 400 days).
- ``GET /v1/contacts/{id}/receipt`` (``admin``): one person's consent receipt
  (docs/receipts.md).
- ``POST /v1/sends`` (``send``): ``{"reports": [{recipient, sender, program, channel,
  sent_at, message_id[, decision_id, decision_index]}, ...]}``, at most 10,000; each is
  ``recorded``, ``duplicate`` (the same report again) or ``conflict`` (the same sender and
  message id with other content: the first stands), or ``invalid`` with a reason.
- ``GET /v1/admin/reviews?status=open|decided|all[&after=][&limit=]`` and
  ``POST /v1/admin/reviews/{inbound_id}`` ``{decision: confirm|reverse, note}`` (``admin``).
- ``GET /v1/exports/{suppression|opt-outs}?sender=&channel=[&since=][&format=csv|json]``
  (``read``: what a sending system needs so as not to send) and
  ``GET /v1/admin/exports/consent?...`` (``admin``: every state, with the evidence of its last
  change), streamed a batch at a time.

Errors keep the API's one shape; no address or text is ever logged here.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiohttp import web

from gateway.addresses import normalize_address
from gateway.audit.html import render_html
from gateway.edges.http.audit_deps import AUDIT, AuditDeps
from gateway.edges.http.auth import require
from gateway.edges.http.gate_api import parse_json
from gateway.edges.http.server import DEPS, BadRequest, query_choice, query_int, read_body
from gateway.errors import BadInput
from keywords.model import Channel

MAX_REPORT_DAYS = 400
MAX_SEND_REPORTS = 10_000
_SEND_REPORTS_BODY = 8 * 1024 * 1024
_EXPORT_COLUMNS = {
    "opt-outs": ("address", "program", "opted_out_at", "method", "last_seq"),
    "suppression": ("address", "reason", "since"),
    "consent": ("address", "program", "state", "since", "last_seq", "method", "evidence"),
}
_DATE = re.compile(r"^\d{4}-\d\d-\d\d$")
_ID = re.compile(r"^[0-9]{1,18}$")


def parse_instant(text: str, name: str) -> datetime:
    """A date (midnight UTC) or an ISO 8601 time (UTC when it names no offset)."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadRequest(f"{name!r} must be a date or an ISO 8601 time") from exc
    if _DATE.match(text) or value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def window(start: str, end: str) -> tuple[datetime, datetime]:
    """``[start, end)``, checked: ordered and at most ``MAX_REPORT_DAYS`` long."""
    first, last = parse_instant(start, "from"), parse_instant(end, "to")
    if last <= first:
        raise BadRequest("'to' must be after 'from'")
    if last - first > timedelta(days=MAX_REPORT_DAYS):
        raise BadRequest(f"a report covers at most {MAX_REPORT_DAYS} days")
    return first, last


def _one(
    request: web.Request, name: str, *, required: bool = True, max_len: int = 254
) -> str | None:
    values = request.query.getall(name, [])
    if not values:
        if required:
            raise BadRequest(f"query parameter {name!r} is required")
        return None
    if len(values) > 1 or not values[0] or len(values[0]) > max_len:
        raise BadRequest(f"query parameter {name!r} must be given once, non-empty")
    return values[0]


def _scope(audit: AuditDeps, sender: str, channel_name: str) -> Channel:
    try:
        channel = Channel(channel_name)
    except ValueError as exc:
        raise BadRequest("'channel' must be 'sms' or 'email'") from exc
    catalog = audit.catalogs.get(sender)
    if catalog is None or catalog.channel is not channel:
        raise BadInput("unknown sender for this channel", code="unknown_sender")
    return channel


async def report(request: web.Request) -> web.Response:
    """The compliance report, as JSON, HTML or PDF."""
    await require(request, "admin")
    audit = request.app[AUDIT]
    start, end = window(_one(request, "from") or "", _one(request, "to") or "")
    sender = _one(request, "sender", required=False)
    if sender is not None and sender not in audit.catalogs:
        raise BadInput("unknown sender", code="unknown_sender")
    fmt = query_choice(request, "format", ("json", "html", "pdf")) or "json"
    document = await audit.service.report(start, end, sender)
    if fmt == "json":
        return web.Response(
            body=orjson.dumps(document, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2),
            content_type="application/json",
        )
    html = render_html(document)
    if fmt == "html":
        return web.Response(text=html, content_type="text/html", charset="utf-8")
    return web.Response(body=await audit.service.pdf(html), content_type="application/pdf")


async def receipt(request: web.Request) -> web.Response:
    """One person's consent receipt, or 422 ``unknown_contact``."""
    await require(request, "admin")
    raw = request.match_info["id"]
    if not _ID.match(raw):
        raise BadRequest("the contact id must be a whole number")
    document = await request.app[AUDIT].service.receipt(int(raw))
    if document is None:
        raise BadInput("no contact with that id", code="unknown_contact")
    return web.Response(
        body=orjson.dumps(document, option=orjson.OPT_INDENT_2), content_type="application/json"
    )


def _send_report(audit: AuditDeps, item: Any) -> dict[str, Any] | str:
    """One report, normalized; or why it is invalid."""
    if not isinstance(item, dict):
        return "not_an_object"
    fields = ("recipient", "sender", "program", "channel", "sent_at", "message_id")
    if not all(isinstance(item.get(k), str) and item.get(k) for k in fields):
        return "missing_field"
    if len(item["message_id"]) > 200 or "\x00" in item["message_id"]:
        return "bad_message_id"
    try:
        channel = Channel(item["channel"])
    except ValueError:
        return "bad_channel"
    catalog = audit.catalogs.get(item["sender"])
    if catalog is None or catalog.channel is not channel:
        return "unknown_sender"
    if not catalog.has_program(item["program"]):
        return "unknown_program"
    try:
        recipient = normalize_address(channel, item["recipient"][:254], audit.default_region)
        sent_at = datetime.fromisoformat(item["sent_at"].replace("Z", "+00:00"))
    except (BadInput, ValueError):
        return "invalid_address_or_time"
    if sent_at.tzinfo is None:
        return "sent_at_without_offset"
    index = item.get("decision_index")
    decision = item.get("decision_id")
    if (decision is None) != (index is None):
        return "decision_id_and_index_go_together"
    if decision is not None and not (
        isinstance(decision, str)
        and len(decision) <= 64
        and type(index) is int
        and 0 <= index < 2**31
    ):
        return "bad_decision"
    return {
        "sender": item["sender"],
        "message_id": item["message_id"],
        "channel": channel.value,
        "program": item["program"],
        "recipient": recipient,
        "sent_at": sent_at.astimezone(UTC),
        "decision_id": decision,
        "decision_index": index,
    }


async def sends(request: web.Request) -> web.Response:
    """Record sends made by an outside sender (idempotent by sender and message id)."""
    principal = await require(request, "send")
    audit = request.app[AUDIT]
    data = parse_json(await read_body(request, _SEND_REPORTS_BODY))
    items = data.get("reports") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise BadRequest("field 'reports' must be a non-empty list")
    if len(items) > MAX_SEND_REPORTS:
        raise BadInput(f"at most {MAX_SEND_REPORTS} reports per request", code="too_many")
    checked = [_send_report(audit, item) for item in items]
    valid = [c for c in checked if isinstance(c, dict)]
    statuses = iter(await audit.service.record_sends(valid, principal.id))
    results = []
    for item, c in zip(items, checked, strict=True):
        message_id = item.get("message_id") if isinstance(item, dict) else None
        if isinstance(c, str):
            results.append({"message_id": message_id, "status": "invalid", "reason": c})
        else:
            results.append({"message_id": message_id, "status": next(statuses)})
    counts = {s: sum(1 for r in results if r["status"] == s)
              for s in ("recorded", "duplicate", "conflict", "invalid")}  # fmt: skip
    return web.json_response({**counts, "results": results})


async def reviews(request: web.Request) -> web.Response:
    """Flagged texts, oldest first."""
    await require(request, "admin")
    status = query_choice(request, "status", ("open", "decided", "all")) or "open"
    limit = query_int(request, "limit", default=100, low=1, high=1_000)
    after = query_int(request, "after", default=0, low=0, high=10**15)
    items = await request.app[AUDIT].service.flagged(status=status, limit=limit, after=after)
    return web.json_response(
        {"items": items, "next_after": items[-1]["inbound_id"] if items else None}
    )


async def decide(request: web.Request) -> web.Response:
    """Confirm or reverse the reading of one flagged text; never a consent change."""
    principal = await require(request, "admin")
    deps = request.app[DEPS]
    raw = request.match_info["inbound_id"]
    if not _ID.match(raw):
        raise BadRequest("the inbound id must be a whole number")
    data = parse_json(await read_body(request, deps.max_body_bytes))
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object")
    action, note = data.get("decision"), data.get("note")
    if action not in ("confirm", "reverse"):
        raise BadRequest("field 'decision' must be 'confirm' or 'reverse'")
    if not isinstance(note, str) or not note.strip() or len(note) > 2_000 or "\x00" in note:
        raise BadRequest("field 'note' must be a non-empty string of at most 2000 characters")
    result = await request.app[AUDIT].service.decide(int(raw), action, note.strip(), principal.id)
    return web.json_response(result)


def _csv_line(columns: tuple[str, ...], row: Mapping[str, Any]) -> str:
    out = io.StringIO()
    values = [row.get(c) for c in columns]
    csv.writer(out).writerow(
        ["" if v is None else v.isoformat() if isinstance(v, datetime) else v for v in values]
    )
    return out.getvalue()


async def _export(request: web.Request, kind: str) -> web.StreamResponse:
    audit = request.app[AUDIT]
    sender = _one(request, "sender") or ""
    channel = _scope(audit, sender, _one(request, "channel") or "")
    since_text = _one(request, "since", required=False)
    since = parse_instant(since_text, "since") if since_text else datetime(1970, 1, 1, tzinfo=UTC)
    fmt = query_choice(request, "format", ("csv", "json")) or "csv"
    columns = _EXPORT_COLUMNS[kind]
    erased = await audit.service.erased_entries(channel.value) if kind == "suppression" else None
    name = f"{kind}-{re.sub(r'[^A-Za-z0-9._-]', '_', sender)}-{channel.value}.{fmt}"
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8" if fmt == "csv" else "application/json",
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        }
    )
    await response.prepare(request)
    if fmt == "csv":
        await response.write(",".join(columns).encode() + b"\r\n")
    else:
        head = {"list": kind, "sender": sender, "channel": channel.value,
                "since": since.isoformat(), "erased_entries_not_listed": erased}  # fmt: skip
        await response.write(orjson.dumps(head)[:-1] + b',"rows":[')
    first = True
    async for batch in audit.service.stream(kind, sender, channel.value, since):
        if fmt == "csv":
            await response.write("".join(_csv_line(columns, r) for r in batch).encode())
            continue
        parts = [orjson.dumps({c: r.get(c) for c in columns}) for r in batch]
        await response.write((b"" if first else b",") + b",".join(parts))
        first = False
    if fmt == "json":
        await response.write(b"]}")
    await response.write_eof()
    return response


async def suppression_list(request: web.Request) -> web.StreamResponse:
    """Addresses a sender must not message on a channel (opted out, complained, bounced)."""
    await require(request, "read")
    return await _export(request, "suppression")


async def opt_out_list(request: web.Request) -> web.StreamResponse:
    """Every opted-out (address, program) of a sender on a channel."""
    await require(request, "read")
    return await _export(request, "opt-outs")


async def consent_export(request: web.Request) -> web.StreamResponse:
    """Every consent state of a sender, with the evidence of its last change."""
    await require(request, "admin")
    return await _export(request, "consent")


def register(app: web.Application) -> None:
    """Add the routes (the wiring puts ``AUDIT`` in the app first)."""
    app.router.add_get("/v1/admin/audit/report", report)
    app.router.add_get("/v1/contacts/{id}/receipt", receipt)
    app.router.add_post("/v1/sends", sends)
    app.router.add_get("/v1/admin/reviews", reviews)
    app.router.add_post("/v1/admin/reviews/{inbound_id}", decide)
    app.router.add_get("/v1/exports/suppression", suppression_list)
    app.router.add_get("/v1/exports/opt-outs", opt_out_list)
    app.router.add_get("/v1/admin/exports/consent", consent_export)
