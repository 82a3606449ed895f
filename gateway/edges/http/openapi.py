"""OpenAPI description (I/O layer): the HTTP API as an OpenAPI 3.1 document at ``/openapi.json``.

Written by hand next to the routes (one table of operations below) so it documents the
stable error codes too; the test suite runs schemathesis against the running gateway with it,
so a route and its description cannot drift apart unnoticed. The document is public, like
``/healthz``: it describes the API and holds no data.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.edges.http.audit_openapi import paths as audit_paths
from gateway.edges.http.openapi_schemas import EXAMPLES, SCHEMAS, ref

_ERRORS = {
    "400": "bad_request: the body is not what the endpoint takes",
    "401": "unauthorized / bad_signature: no valid API key or signature",
    "403": "forbidden: the key lacks the scope",
    "413": "body_too_large",
    "422": "a refusal with a stable code: unknown_sender, unknown_program, invalid_address, "
    "suppressed, send_refused (with reason), invalid_sender, invalid_rules, unknown_contact,"
    " body_too_long, invalid_body, invalid_state, invalid_time_zone, ...",
    "503": "temporarily_unavailable: nothing was done; retry (Retry-After)",
}


def _json(name: str) -> dict[str, Any]:
    return {"application/json": {"schema": ref(name)}}


def _op(
    summary: str,
    scope: str | None,
    ok: tuple[str, str, str] | None,
    body: str | None = None,
    *,
    params: list[dict[str, Any]] | None = None,
    form: bool = False,
) -> dict[str, Any]:
    """One operation: ``ok`` is (status, media type, schema name or "html")."""
    responses: dict[str, Any] = {
        code: {"description": text, "content": _json("Error")} for code, text in _ERRORS.items()
    }
    if ok is not None:
        status, media, schema = ok
        content = (
            {media: {"schema": {"type": "string"}}}
            if media != "application/json"
            else _json(schema)
        )
        responses[status] = {"description": "success", "content": content}
    for status in ("403", "410"):
        if media_is_html(ok):
            responses[status] = {"description": "link not valid", "content": _html()}
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    op["security"] = [] if scope is None else [{"apiKey": []}]
    if scope is not None:
        op["description"] = f"Needs an API key with scope `{scope}`."
    if body is not None:
        content = _json(body)
        if body in EXAMPLES:
            content["application/json"]["example"] = EXAMPLES[body]
        op["requestBody"] = {"required": True, "content": content}
    if form:
        op["requestBody"] = {
            "required": True,
            "content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}},
        }
    if params:
        op["parameters"] = params
    return op


def media_is_html(ok: tuple[str, str, str] | None) -> bool:
    """True for the browser pages."""
    return ok is not None and ok[1] == "text/html"


def _html() -> dict[str, Any]:
    return {"text/html": {"schema": {"type": "string"}}}


def _readyz() -> dict[str, Any]:
    """``GET /readyz``: 200 and 503 carry the same body, naming every failed check."""
    op = _op(
        "Readiness: 200 when every promise holds, else 503 naming what does not",
        None,
        ("200", _JSON_OK, "Readiness"),
        params=[
            {
                "name": "scope",
                "in": "query",
                "required": False,
                "description": "`intake`: only what recording an opt-out needs (PostgreSQL "
                "and the writer); point a load balancer here and alert on the full check",
                "schema": {"type": "string", "enum": ["intake"]},
            }
        ],
    )
    op["responses"]["503"] = {
        "description": "not ready: `problems` names each failed check",
        "content": _json("Readiness"),
    }
    return op


def _put_rules() -> dict[str, Any]:
    """``PUT /v1/admin/rules/{name}``: the body is TOML, an operator_dir file's text."""
    op = _op(
        "Store an operator rule document (the TOML of a [rules] operator_dir file), validated"
        " on top of the shipped table, operator_dir and the other documents; 422"
        " invalid_rules naming the document and key for a weaker rule, a conflict, a window"
        " that never opens or a program it cannot carry; audited, live on every instance",
        "admin",
        ("200", _JSON_OK, "RulesStored"),
        params=_RULES_NAME,
    )
    op["requestBody"] = {
        "required": True,
        "content": {"application/toml": {"schema": {"type": "string"}},
                    "text/plain": {"schema": {"type": "string"}}},
    }  # fmt: skip
    op["responses"]["415"] = {
        "description": "unsupported_media_type: the body must be application/toml or text/plain",
        "content": _json("Error"),
    }
    return op


def _delete_rules() -> dict[str, Any]:
    """``DELETE /v1/admin/rules/{name}``: 404 when there is no such document."""
    op = _op(
        "Remove an operator rule document (422 invalid_rules if the rest no longer loads);"
        " audited, live on every instance",
        "admin",
        ("200", _JSON_OK, "RulesDeleted"),
        params=_RULES_NAME,
    )
    op["responses"]["404"] = {
        "description": "not_found: no such document",
        "content": _json("Error"),
    }
    return op


_TOKEN = [{"name": "token", "in": "path", "required": True, "schema": {"type": "string"}}]
_SENDER = [{"name": "sender", "in": "path", "required": True, "schema": {"type": "string"}}]
_TWILIO = [{"name": "X-Twilio-Signature", "in": "header", "required": True,
            "schema": {"type": "string"}}]  # fmt: skip
_RULES_NAME = [{"name": "name", "in": "path", "required": True,
                "schema": {"type": "string", "pattern": "^[a-z][a-z0-9_-]{0,63}$"}}]  # fmt: skip
_LIMIT = [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
           "maximum": 1000}}]  # fmt: skip
_EXPIRING: list[dict[str, Any]] = [
    {"name": "days", "in": "query", "required": True,
     "schema": {"type": "integer", "minimum": 0, "maximum": 3650}},
    {"name": "sender", "in": "query", "schema": {"type": "string", "minLength": 1}},
]  # fmt: skip
_SIGNED = [
    {
        "name": "X-Gateway-Signature",
        "in": "header",
        "required": True,
        "description": "t=<unix seconds>,v1=<hex HMAC-SHA256 of '<t>.' + body>",
        "schema": {"type": "string"},
    }
]
_JSON_OK = "application/json"
_PAGE = ("200", "text/html", "html")

PATHS: dict[str, Any] = {
    "/v1/gate/check": {
        "post": _op(
            "May we message one recipient?", "read", ("200", _JSON_OK, "GateAnswer"), "GateCheck"
        )
    },
    "/v1/gate/batch": {
        "post": _op(
            "Check up to 1,000,000 recipients; the answer streams in input order",
            "read",
            ("200", _JSON_OK, "GateBatchResult"),
            "GateBatch",
        )
    },
    "/v1/send": {
        "post": _op(
            "Send through the gateway: queued only with consent, else 422 "
            "send_refused with the gate's reason; 422 body_too_long past [api] "
            "max_send_segments (SMS) or max_send_email_chars, 422 invalid_body for a "
            "control character",
            "send",
            ("202", _JSON_OK, "Queued"),
            "Send",
        )
    },
    "/v1/consent": {
        "post": _op(
            "Record a web-form, verbal, written or API opt-in or opt-out",
            "write",
            ("200", _JSON_OK, "ConsentResult"),
            "Consent",
        )
    },
    "/v1/consent/expiring": {
        "get": _op(
            "Opted-in consents whose basis lapses within `days` (0..3650), soonest first,"
            " with basis, since and expires_at (docs/rules.md)",
            "read",
            ("200", _JSON_OK, "ExpiringConsents"),
            params=_EXPIRING,
        )
    },
    "/v1/contacts/location": {
        "put": _op(
            "Record a contact's state (ISO 3166-2) and IANA time zone for the send rules;"
            " a field left out or null is cleared (docs/rules.md, Local time). 422"
            " invalid_state, invalid_time_zone, unknown_contact, suppressed",
            "write",
            ("200", _JSON_OK, "LocationRecorded"),
            "Location",
        )
    },
    "/v1/preferences/links": {
        "post": _op(
            "A signed preference-page link: {channel, contact}, or {contacts: [...]} with one"
            " contact per channel, all on one page",
            "write",
            ("200", _JSON_OK, "Link"),
            "PreferenceLink",
        )
    },
    "/v1/privacy/export": {
        "post": _op(
            "GDPR art. 15: all data on a contact, ledger included",
            "admin",
            ("200", _JSON_OK, "Object"),
            "Subject",
        )
    },
    "/v1/privacy/rectify": {
        "post": _op(
            "GDPR art. 16: a changed number or address, history kept",
            "admin",
            ("200", _JSON_OK, "Object"),
            "Rectify",
        )
    },
    "/v1/privacy/erase": {
        "post": _op(
            "GDPR art. 17: opt out, pseudonymise, redact, suppress",
            "admin",
            ("200", _JSON_OK, "Object"),
            "Subject",
        )
    },
    "/v1/admin/senders": {
        "get": _op(
            "Senders, programs and keywords as served now", "admin", ("200", _JSON_OK, "Object")
        )
    },
    "/v1/admin/senders/{sender}": {
        "put": _op(
            "Replace a sender definition (validated like check-config, audited, "
            "live on every instance)",
            "admin",
            ("200", _JSON_OK, "Object"),
            "Object",
            params=_SENDER,
        )
    },
    "/v1/admin/rules": {
        "get": _op(
            "The send rules this instance serves: each rule, category policy, consent duration"
            " and holiday calendar with where it is defined, and the stored documents",
            "admin",
            ("200", _JSON_OK, "RulesSummary"),
        )
    },
    "/v1/admin/rules/{name}": {"put": _put_rules(), "delete": _delete_rules()},
    "/v1/admin/audit": {
        "get": _op(
            "The audit log, newest first", "admin", ("200", _JSON_OK, "Object"), params=_LIMIT
        )
    },
    "/v1/providers/twilio/sms": {
        "post": _op(
            "Twilio-compatible inbound SMS (X-Twilio-Signature); empty TwiML",
            None,
            ("200", "text/xml", "xml"),
            params=_TWILIO,
            form=True,
        )
    },
    "/v1/inbound/sms": {
        "post": _op(
            "Signed JSON inbound SMS {id, from, to, text}; 200 after the commit",
            None,
            ("200", _JSON_OK, "Object"),
            "InboundSms",
            params=_SIGNED,
        )
    },
    "/v1/email/headers": {
        "post": _op(
            "Signed JSON {list, to, program?} -> List-Unsubscribe header values (RFC 8058)",
            None,
            ("200", _JSON_OK, "Object"),
            "Object",
            params=_SIGNED,
        )
    },
    "/u/{token}": {
        "get": _op("One-click unsubscribe page (changes nothing)", None, _PAGE, params=_TOKEN),
        "post": _op(
            "RFC 8058 one-click unsubscribe (no redirect)", None, _PAGE, params=_TOKEN, form=True
        ),
    },
    "/healthz": {"get": _op("Liveness: the event loop answers", None, ("200", _JSON_OK, "Object"))},
    "/readyz": {"get": _readyz()},
    "/metrics": {
        "get": _op(
            "Prometheus metrics, text exposition format (README, Operations)",
            None,
            ("200", "text/plain", "text"),
        )
    },
    "/p/{token}": {
        "get": _op("The preference page (changes nothing)", None, _PAGE, params=_TOKEN),
        "post": _op(
            "Toggle one program (303 back to the page)",
            None,
            ("303", "text/plain", "text"),
            params=_TOKEN,
            form=True,
        ),
    },
    "/c/{token}": {
        "get": _op("Double opt-in confirmation page (changes nothing)", None, _PAGE, params=_TOKEN),
        "post": _op("Confirm a pending double opt-in", None, _PAGE, params=_TOKEN),
    },
}

PATHS.update(audit_paths(_op))

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Consent gateway API",
        "version": "1",
        "description": "Consent capture, the send gate, send-through, preference pages, "
        "data-subject rights and operator access. Errors are "
        '`{"error": {"code", "message"}}` with stable codes.',
    },
    "paths": PATHS,
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
    },
}


async def serve(_request: web.Request) -> web.Response:
    """The document."""
    return web.json_response(DOCUMENT)


def register(app: web.Application) -> None:
    """Add the route."""
    app.router.add_get("/openapi.json", serve)
