"""The OpenAPI document's data shapes: component schemas and request examples.

gateway/edges/http/openapi.py puts them together with the table of operations; they live
apart because they are most of the document's lines and change on their own (a field added
to an answer is a schema change, not a route change).
"""

from __future__ import annotations

from typing import Any

STRING = {"type": "string", "minLength": 1}
CHANNEL = {"type": "string", "enum": ["sms", "email"]}
REASONS = [
    "opted_in",
    "no_consent",
    "pending_confirmation",
    "opted_out",
    "invalid_address",
    "suppressed",
    "deferred",
    "refused_by_rule",
]
TERMS = {
    "category": {
        "type": "string",
        "enum": ["marketing", "informational", "healthcare_exempt", "transactional"],
        "description": "default: the program's first category (docs/rules.md)",
    },
    "at": {
        "type": "string",
        "format": "date-time",
        "description": "the send time the rules are asked about; default now",
    },
}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "required": list(required),
        "properties": {**required, **(optional or {})},
    }


SCHEMAS: dict[str, Any] = {
    "Error": obj(
        {
            "error": obj(
                {"code": {"type": "string"}, "message": {"type": "string"}},
                {"reason": {"type": "string", "enum": REASONS}},
            )
        }
    ),
    "GateAnswer": obj(
        {
            "allowed": {"type": "boolean"},
            "verdict": {"type": "string", "enum": ["allowed", "deferred", "refused"]},
            "reason": {"type": "string", "enum": REASONS},
            "since": {"type": ["string", "null"], "format": "date-time"},
        },
        {
            "not_before": {
                "type": "string",
                "format": "date-time",
                "description": "deferred: the first instant every send rule allows",
            },
            "detail": {"type": "string", "description": "the send rule that deferred or refused"},
        },
    ),
    "Readiness": {
        **obj(
            {
                "status": {"type": "string", "enum": ["ready", "unavailable"]},
                "problems": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "each failed check: database, writer, task:NAME, "
                    "smpp:SENDER, smtp, opt_out_confirmations_late",
                },
                "database": {"type": "string", "enum": ["ok", "down"]},
                "writer": {"type": "string", "enum": ["ok", "down"]},
                "cache": {"type": "string", "enum": ["ok", "bypassed"]},
            },
            {
                "tasks_down": {"type": "array", "items": {"type": "string"}},
                "smpp_unbound_senders": {"type": "array", "items": {"type": "string"}},
                "smtp": {"type": "string", "enum": ["ok", "down"]},
                "oldest_opt_out_confirmation_seconds": {"type": "number", "minimum": 0},
            },
        ),
        "additionalProperties": False,
        "description": "`cache: bypassed` is no problem: the gate then reads PostgreSQL. "
        "The intake scope carries only status, problems, database, writer and cache.",
    },
    "GateCheck": obj(
        {"sender": STRING, "program": STRING, "channel": CHANNEL, "to": STRING}, TERMS
    ),
    "GateBatch": obj(
        {
            "sender": STRING,
            "program": STRING,
            "channel": CHANNEL,
            "to": {"type": "array", "items": {"type": "string"}, "maxItems": 1_000_000},
        },
        TERMS,
    ),
    "GateBatchResult": obj({"results": {"type": "array", "items": ref("GateAnswer")}}),
    "Consent": obj(
        {
            "sender": STRING,
            "program": STRING,
            "channel": CHANNEL,
            "contact": STRING,
            "action": {"type": "string", "enum": ["opt_in", "opt_out"]},
            "method": {"type": "string", "enum": ["web_form", "verbal", "written", "api"]},
            "idempotency_key": STRING,
        },
        {
            "evidence": {
                "type": "object",
                "description": "web_form needs checkbox_text, disclosure_version, ip, "
                "user_agent, page_url; verbal and written need operator and reference",
                "additionalProperties": {"type": "string"},
            }
        },
    ),
    "ConsentResult": obj(
        {
            "status": {"type": "string", "enum": ["committed", "duplicate"]},
            "inbound_id": {"type": "integer"},
            "transitions": {"type": "array", "items": {"type": "object"}},
            "ledger_seqs": {"type": "array", "items": {"type": "integer"}},
            "outbox_ids": {"type": "array", "items": {"type": "integer"}},
        }
    ),
    "Send": obj(
        {"sender": STRING, "program": STRING, "channel": CHANNEL, "to": STRING, "body": STRING}
    ),
    "Queued": obj({"status": {"const": "queued"}, "outbox_id": {"type": "integer"}}),
    "Subject": obj({"channel": CHANNEL, "contact": STRING}),
    "Rectify": obj({"channel": CHANNEL, "contact": STRING, "new_contact": STRING}),
    "Link": obj({"url": {"type": "string"}}),
    # PUT /v1/contacts/location: the whole record; left out or null clears (docs/rules.md).
    "Location": {
        **obj(
            {"channel": CHANNEL, "contact": STRING},
            {
                "state": {"type": ["string", "null"], "description": "ISO 3166-2, e.g. US-FL"},
                "time_zone": {
                    "type": ["string", "null"],
                    "description": "IANA, e.g. America/New_York",
                },
            },
        ),
        "additionalProperties": False,
    },
    "LocationRecorded": obj(
        {
            "status": {"type": "string", "enum": ["recorded", "cleared"]},
            "contact_id": {"type": "integer"},
            "state": {"type": ["string", "null"]},
            "time_zone": {"type": ["string", "null"]},
        }
    ),
    "PreferenceLink": {
        "type": "object",
        "properties": {
            "channel": CHANNEL,
            "contact": STRING,
            "contacts": {"type": "array", "items": ref("Subject"), "minItems": 1, "maxItems": 2},
        },
    },
    "Object": {"type": "object"},
    # GET /v1/consent/expiring (docs/rules.md, "Consent duration"), soonest first.
    "ExpiringConsents": obj(
        {
            "at": {"type": "string", "format": "date-time"},
            "days": {"type": "integer", "minimum": 0, "maximum": 3650},
            "sender": {"type": ["string", "null"]},
            "items": {
                "type": "array",
                "items": obj(
                    {
                        "channel": CHANNEL,
                        "sender": {"type": "string"},
                        "program": {"type": "string"},
                        "address": {"type": "string"},
                        "basis": {
                            "type": "string",
                            "enum": [
                                "implied_purchase",
                                "implied_inquiry",
                                "express_written",
                                "express",
                                "soft_opt_in",
                            ],
                        },
                        "since": {"type": "string", "format": "date-time"},
                        "expires_at": {"type": "string", "format": "date-time"},
                    }
                ),
            },
        }
    ),
    "InboundSms": obj(
        {"id": STRING, "from": STRING, "to": STRING, "text": {"type": "string"}},
        {"timestamp": {"type": "string", "format": "date-time"}},
    ),
    # GET /v1/admin/rules (docs/rules.md, "Operators: adding and replacing rules").
    "RulesSummary": obj(
        {
            "rules": {
                "type": "array",
                "items": obj(
                    {
                        "id": {"type": "string"},
                        "title": {"type": "string"},
                        "jurisdiction": {"type": "string"},
                        "channels": {"type": "array", "items": CHANNEL},
                        "categories": {"type": "array", "items": TERMS["category"]},
                        "defined_in": ref("RulesOrigin"),
                        "sources": {
                            "type": "array",
                            "items": obj(
                                {
                                    "citation": {"type": "string"},
                                    "url": {"type": "string"},
                                    "checked": {"type": "string"},
                                }
                            ),
                        },
                        "effective": obj(
                            {
                                "from": {"type": ["string", "null"], "format": "date"},
                                "until": {"type": ["string", "null"], "format": "date"},
                            }
                        ),
                    }
                ),
            },
            "categories": {
                "type": "array",
                "items": obj(
                    {
                        "category": {"type": "string"},
                        "consent": {"type": "object"},
                        "defined_in": ref("RulesOrigin"),
                    }
                ),
            },
            "consent": {
                "type": "array",
                "items": obj(
                    {
                        "basis": {"type": "string"},
                        "months": {"type": ["integer", "null"]},
                        "defined_in": ref("RulesOrigin"),
                    }
                ),
            },
            "holidays": {
                "type": "array",
                "items": obj({"name": {"type": "string"}, "defined_in": ref("RulesOrigin")}),
            },
            "serving": {
                "type": "array",
                "items": {"type": "string"},
                "description": "the stored documents this instance's rules were built from",
            },
            "documents": {
                "type": "array",
                "items": obj(
                    {
                        "name": {"type": "string"},
                        "revision": {"type": "integer"},
                        "updated_at": {"type": "string", "format": "date-time"},
                        "updated_by": {"type": "string"},
                        "toml": {"type": "string"},
                    }
                ),
            },
        }
    ),
    "RulesOrigin": obj(
        {
            "layer": {"type": "string", "enum": ["shipped", "operator_dir", "stored"]},
            "name": {"type": "string", "description": "the file, or the stored document"},
        }
    ),
    "RulesStored": obj({"name": {"type": "string"}, "revision": {"type": "integer"}}),
    "RulesDeleted": obj({"name": {"type": "string"}, "deleted_revision": {"type": "integer"}}),
}

SCOPE = {"sender": "12345", "program": "reminders", "channel": "sms"}
# Request examples: schemathesis sends each once, so the happy path is exercised too.
EXAMPLES: dict[str, Any] = {
    "GateCheck": {**SCOPE, "to": "+14155550123"},
    "GateBatch": {**SCOPE, "to": ["+14155550123", "+14155550124", "not a number"]},
    "Send": {**SCOPE, "to": "+14155550123", "body": "Your appointment is at 10:00"},
    "Consent": {
        **SCOPE,
        "contact": "+14155550123",
        "action": "opt_in",
        "method": "web_form",
        "idempotency_key": "form-42",
        "evidence": {
            "checkbox_text": "Text me appointment reminders",
            "disclosure_version": "2026-01",
            "ip": "203.0.113.9",
            "user_agent": "Mozilla/5.0",
            "page_url": "https://acme.example/signup",
        },
    },
    "Subject": {"channel": "sms", "contact": "+14155550123"},
    "PreferenceLink": {
        "contacts": [
            {"channel": "sms", "contact": "+14155550123"},
            {"channel": "email", "contact": "ann@example.org"},
        ]
    },
    "Rectify": {"channel": "sms", "contact": "+14155550123", "new_contact": "+14155550177"},
    "Location": {"channel": "sms", "contact": "+14155550123", "time_zone": "America/New_York"},
}
