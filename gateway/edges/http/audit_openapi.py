"""The audit routes in the OpenAPI document (I/O layer), beside the routes they describe.

gateway/edges/http/openapi.py adds these operations to its table with its own ``_op``, so
they get the API's error responses and security and are fuzzed with the rest
(tests/edges/api/test_api_openapi.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Op = Callable[..., dict[str, Any]]
_JSON = "application/json"
_OK = ("200", _JSON, "Object")


def _query(name: str, required: bool, schema: dict[str, Any], text: str = "") -> dict[str, Any]:
    param = {"name": name, "in": "query", "required": required, "schema": schema}
    if text:
        param["description"] = text
    return param


def _alternatives(op: dict[str, Any], *media: str) -> dict[str, Any]:
    """The success answer in more media types than JSON."""
    content = op["responses"]["200"]["content"]
    for kind in media:
        content[kind] = {"schema": {"type": "string"}}
    return op


_LIST = [
    _query("sender", True, {"type": "string", "minLength": 1}),
    _query("channel", True, {"type": "string", "enum": ["sms", "email"]}),
    _query("since", False, {"type": "string", "format": "date"}, "changes from this day on"),
    _query("format", False, {"type": "string", "enum": ["csv", "json"]}),
]


def paths(op: Op) -> dict[str, Any]:
    """The operations of gateway/edges/http/audit_api.py."""
    window = [
        _query("from", True, {"type": "string", "format": "date"}, "first day, UTC"),
        _query("to", True, {"type": "string", "format": "date"}, "the day after the last"),
        _query("sender", False, {"type": "string", "minLength": 1}),
        _query("format", False, {"type": "string", "enum": ["json", "html", "pdf"]}),
    ]
    review_id = [
        {
            "name": "inbound_id",
            "in": "path",
            "required": True,
            "schema": {"type": "integer", "minimum": 1},
        }
    ]
    contact_id = [
        {"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
    ]
    return {
        "/v1/admin/audit/report": {
            "get": _alternatives(
                op(
                    "The compliance report of [from, to) (422 pdf_unavailable without Chromium)",
                    "admin",
                    _OK,
                    params=window,
                ),
                "text/html",
                "application/pdf",
            )
        },
        "/v1/contacts/{id}/receipt": {
            "get": op(
                "One person's consent receipt, checkable offline (docs/receipts.md)",
                "admin",
                _OK,
                params=contact_id,
            )
        },
        "/v1/sends": {
            "post": op(
                "Sends made by an outside sender: {reports: [{recipient, sender, program,"
                " channel, sent_at, message_id, decision_id?, decision_index?}]}",
                "send",
                _OK,
                "Object",
            )
        },
        "/v1/admin/reviews": {
            "get": op(
                "Texts flagged needs_review, oldest first",
                "admin",
                _OK,
                params=[
                    _query("status", False, {"type": "string", "enum": ["open", "decided", "all"]}),
                    _query("after", False, {"type": "integer", "minimum": 0}),
                    _query("limit", False, {"type": "integer", "minimum": 1, "maximum": 1000}),
                ],
            )
        },
        "/v1/admin/reviews/{inbound_id}": {
            "post": op(
                "{decision: confirm|reverse, note}: an operator's finding; never a consent change",
                "admin",
                _OK,
                "Object",
                params=review_id,
            )
        },
        "/v1/exports/suppression": {
            "get": _alternatives(
                op("Addresses a sender must not message (streamed)", "read", _OK, params=_LIST),
                "text/csv",
            )
        },
        "/v1/exports/opt-outs": {
            "get": _alternatives(
                op("Every opted-out address and program (streamed)", "read", _OK, params=_LIST),
                "text/csv",
            )
        },
        "/v1/admin/exports/consent": {
            "get": _alternatives(
                op(
                    "Every consent state with its last evidence (streamed)",
                    "admin",
                    _OK,
                    params=_LIST,
                ),
                "text/csv",
            )
        },
    }
