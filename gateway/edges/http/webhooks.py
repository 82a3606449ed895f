"""Provider webhooks (I/O layer): Twilio-compatible inbound SMS, ``POST /v1/providers/twilio/sms``.

Twilio posts ``application/x-www-form-urlencoded`` fields (``MessageSid``, ``From``, ``To``,
``Body``, ...) and signs them in ``X-Twilio-Signature``: base64 of HMAC-SHA1, keyed with the
account's auth token, over the full URL as Twilio called it followed by every POST field,
sorted by name, as name + value with no separators (Twilio docs, "Webhooks security").
Behind a proxy the URL we see differs from Twilio's, so the signed URL is rebuilt from
``[providers.twilio] public_url`` plus the request's path and query. A signature that is not
28 characters of base64 (an HMAC-SHA1 is 20 bytes), or arrives when no auth token is
configured, is refused like a wrong one: 401 with the same fixed text, whatever bytes came.

We answer 200 with an empty TwiML ``<Response/>`` only after the commit; replies leave
through the outbox (after the commit, retried), never inline in TwiML. With Advanced
Opt-Out, Twilio handles STOP / START / HELP itself, replies itself and tells us in
``OptOutType``: we record that intent exactly and queue no second confirmation (CTIA 5.1.3:
one confirmation).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from aiohttp import web

from gateway.edges.http.auth import API
from gateway.edges.http.server import DEPS, BadRequest, read_body
from gateway.logs import LimitedLog
from gateway.messages import InboundMessage, Method
from gateway.security.signing import SignatureError
from gateway.storable import storable
from keywords.model import Channel, Intent, IntentKind, MatchKind

SIGNATURE_HEADER = "X-Twilio-Signature"
_SIGNATURE = re.compile(r"[A-Za-z0-9+/]{27}=")  # base64 of the 20 bytes of an HMAC-SHA1
_unconfigured = LimitedLog(logging.getLogger(__name__), burst=1)
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
_OPT_OUT_TYPES = {
    "STOP": IntentKind.OPT_OUT_ALL,
    "START": IntentKind.OPT_IN,
    "HELP": IntentKind.HELP,
}


def twilio_signature(auth_token: str, url: str, params: Sequence[tuple[str, str]]) -> str:
    """The ``X-Twilio-Signature`` Twilio would send for ``url`` and the POST ``params``."""
    data = url + "".join(k + v for k, v in sorted(params))
    mac = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(mac).decode("ascii")


def _field(params: dict[str, str], name: str, *, max_len: int = 64) -> str:
    value = params.get(name, "")
    if not value or len(value) > max_len or not storable(value):
        raise BadRequest(f"field {name!r} missing, too long or not storable")
    return value


async def twilio_sms(request: web.Request) -> web.Response:
    """One inbound SMS from a Twilio-compatible provider."""
    deps, api = request.app[DEPS], request.app[API]
    body = await read_body(request, deps.max_body_bytes)
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest("body is not a URL-encoded form") from exc
    if api.twilio_auth_token is None:
        # The operator's problem, not the caller's: the caller learns nothing of our set-up.
        _unconfigured.log(
            logging.WARNING,
            "Twilio webhook called but GATEWAY_TWILIO_AUTH_TOKEN is unset",
            key="no_token",
        )
        raise SignatureError(f"{SIGNATURE_HEADER} does not match")
    given = request.headers.get(SIGNATURE_HEADER, "")
    if not _SIGNATURE.fullmatch(given):
        raise SignatureError(f"{SIGNATURE_HEADER} does not match")
    expected = twilio_signature(
        api.twilio_auth_token, api.twilio_public_url + request.path_qs, pairs
    )
    if not hmac.compare_digest(expected.encode("ascii"), given.encode("ascii")):
        raise SignatureError(f"{SIGNATURE_HEADER} does not match")
    params = dict(pairs)
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    if not sid or len(sid) > 64 or not storable(sid):
        raise BadRequest("field 'MessageSid' missing or too long")
    opt_out_type = params.get("OptOutType", "").upper()
    kind = _OPT_OUT_TYPES.get(opt_out_type)
    message = InboundMessage(
        channel=Channel.SMS,
        sender=_field(params, "To"),
        contact=_field(params, "From"),
        text=params.get("Body", ""),
        method=Method.SMS_KEYWORD,
        dedupe_key=f"twilio:{sid}",
        received_at=datetime.now(UTC),
        evidence={
            "message_id": sid,
            "source": "twilio",
            "account": params.get("AccountSid", "")[:64],
            "opt_out_type": opt_out_type,
        },
        # The provider already acted and replied: record what it did, send nothing more.
        intent=None
        if kind is None
        else Intent(kind, MatchKind.EXACT, keyword=opt_out_type.lower()),
        suppress_replies=kind is not None,
    )
    await deps.pipeline.handle(message)
    return web.Response(text=EMPTY_TWIML, content_type="text/xml")


def register(app: web.Application) -> None:
    """Add the route."""
    app.router.add_post("/v1/providers/twilio/sms", twilio_sms)
