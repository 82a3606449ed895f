"""Consent capture and send-through (I/O layer): forms, operators, double opt-in links, sends.

- ``POST /v1/consent`` (scope ``write``): a web-form opt-in or opt-out with the evidence an
  auditor asks for (ICO: who, when, how, what they were told; GDPR art. 7(1): the controller
  must be able to demonstrate consent), or a verbal / written one entered by an operator with
  a reference to the evidence. ``idempotency_key`` makes retries exactly-once (invariant 3).
  A double opt-in program stays ``pending``: SMS gets the sender's "Reply YES" text, email a
  link to ``/c/{token}``. Either expires after ``confirm_ttl_seconds``: the link stops
  working, and a sweep closes the sign-up (``expire_pending``).
- ``GET /c/{token}`` shows a button, ``POST /c/{token}`` confirms: a GET never changes
  anything, because mail scanners fetch every link (listmonk #1454). The consent table
  decides what a POST does (``IntentKind.CONFIRM_LINK``): only a pending sign-up is confirmed,
  and the page says which of "confirmed", "already confirmed" and "no longer applies" it was.
- ``POST /v1/send`` (scope ``send``): queue an SMS or email only if the recipient opted in;
  otherwise 422 ``send_refused`` with the gate's reason (as Twilio refuses with 21610). A body
  over the segment or character cap is 422 ``body_too_long``, one with a control character
  422 ``invalid_body`` (gateway/send_limits.py), whoever the recipient.
- ``POST /v1/preferences/links`` (scope ``write``): a signed preference-page link.
"""

from __future__ import annotations

import html
import logging
import uuid
from collections.abc import Mapping
from typing import Any, Protocol

import orjson
from aiohttp import web

from gateway.addresses import key_and_send_address, normalize_address
from gateway.edges.http.auth import API, ApiDeps, Privacy, require
from gateway.edges.http.client_address import client_address
from gateway.edges.http.gate_api import parse_json, scope_of, terms_of
from gateway.edges.http.server import DEPS, BadRequest, channel_field, read_body, string_field
from gateway.errors import BadInput, UnknownSender
from gateway.gate import GateReason
from gateway.messages import InboundMessage, Method, Outcome
from gateway.security.tokens import TokenCodec, TokenError
from gateway.send_limits import check_body
from keywords.catalog import SenderCatalog
from keywords.model import Action, Channel, IntentKind, ReplyKind

log = logging.getLogger(__name__)

CONFIRM_PURPOSE = "confirm"
SWEEP_SECONDS = 60.0
PREFERENCES_PURPOSE = "preferences"
_FORM_EVIDENCE = ("checkbox_text", "disclosure_version", "ip", "user_agent", "page_url")
_OPERATOR_EVIDENCE = ("operator", "reference")
_METHODS = {
    "web_form": (Method.WEB_FORM, _FORM_EVIDENCE),
    "verbal": (Method.VERBAL, _OPERATOR_EVIDENCE),
    "written": (Method.WRITTEN, _OPERATOR_EVIDENCE),
    "api": (Method.API, ()),
}


class SendRefused(BadInput):
    """The recipient has not opted in: a stable, documented refusal (HTTP 422)."""

    code = "send_refused"


def catalog_for(api: ApiDeps, sender: str, program: str, channel: Channel) -> SenderCatalog:
    """The sender's catalog, checked against the channel and program asked for."""
    catalog = api.catalogs.get(sender)
    if catalog is None or catalog.channel is not channel:
        raise UnknownSender("unknown sender for this channel")
    if not catalog.has_program(program):
        raise BadInput("the sender has no such program", code="unknown_program")
    return catalog


def pack(*parts: str) -> bytes:
    """A token payload of NUL-separated fields (none of them may contain NUL)."""
    return "\0".join(parts).encode()


def unpack(payload: bytes, count: int) -> list[str]:
    """The fields of a payload; a ``TokenError`` if the shape is wrong."""
    parts = payload.decode("utf-8", "replace").split("\0")
    if len(parts) != count:
        raise TokenError("token payload has the wrong shape")
    return parts


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    """What a capture returns: the status, the new states and the ids written."""
    decision = outcome.decision
    return {
        "status": outcome.status.value,
        "inbound_id": outcome.inbound_id,
        "transitions": [
            {"program": t.program, "from": t.old.value, "to": t.new.value}
            for t in (decision.transitions if decision else ())
        ],
        "ledger_seqs": list(outcome.ledger_seqs),
        "outbox_ids": list(outcome.outbox_ids),
    }


def _evidence(data: dict[str, Any], required: tuple[str, ...]) -> dict[str, str]:
    raw = data.get("evidence", {})
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and len(k) <= 64 and len(v) <= 2_000
        for k, v in raw.items()
    ):
        raise BadRequest("field 'evidence' must be an object of short strings")
    if len(raw) > 32:
        raise BadRequest("field 'evidence' has too many entries")
    missing = [name for name in required if not raw.get(name)]
    if missing:
        raise BadRequest(f"evidence is missing {', '.join(missing)}")
    return dict(raw)


async def capture(request: web.Request) -> web.Response:
    """Record one consent given or withdrawn outside SMS and mail."""
    principal = await require(request, "write")
    deps, api = request.app[DEPS], request.app[API]
    data = parse_json(await read_body(request, deps.max_body_bytes))
    sender, program, channel = scope_of(data)
    catalog = catalog_for(api, sender, program, channel)
    action = string_field(data, "action", max_len=16)
    if action not in ("opt_in", "opt_out"):
        raise BadRequest("field 'action' must be 'opt_in' or 'opt_out'")
    method_name = string_field(data, "method", max_len=16)
    if method_name not in _METHODS:
        raise BadRequest(f"field 'method' must be one of {', '.join(_METHODS)}")
    method, required = _METHODS[method_name]
    evidence = _evidence(data, required)
    key = string_field(data, "idempotency_key", max_len=128)
    address, send_to = key_and_send_address(
        channel, string_field(data, "contact", max_len=254), api.default_region
    )
    # An erased (suppressed) address is refused by the writer with code ``suppressed``,
    # except a web form for a double opt-in program: pending until the person confirms.
    link_mail = (
        action == "opt_in" and channel is Channel.EMAIL and catalog.program(program).double_opt_in
    )
    kind = IntentKind.JOIN if action == "opt_in" else IntentKind.OPT_OUT
    outcome = await deps.pipeline.handle(
        InboundMessage.decided(
            channel=channel,
            sender=sender,
            contact=send_to,
            method=method,
            dedupe_key=f"consent:{principal.id}:{key}",
            kind=kind,
            program=program,
            evidence={**evidence, "api_key": principal.id},
            # Email double opt-in: the confirmation is the link mail below, not a reply.
            suppress_replies=link_mail,
        )
    )
    body = outcome_json(outcome)
    pending = outcome.decision is not None and any(
        t.action is Action.PENDING for t in outcome.decision.transitions
    )
    if link_mail and pending and outcome.decision is not None:
        token = api.tokens.issue(
            pack(channel.value, sender, program, send_to),
            CONFIRM_PURPOSE,
            ttl_seconds=api.confirm_ttl_seconds,
        )
        url = f"{api.public_base_url}/c/{token}"
        ask = next((r.text for r in outcome.decision.replies if r.kind is ReplyKind.PENDING), "")
        text = f"{ask}\n\nConfirm here: {url}\n"
        queued = await api.sends.queue_notice(
            channel.value, sender, program, address, text, recipient=send_to
        )
        if queued is not None:  # None: the person opted out in the meantime
            body["outbox_ids"].append(queued)
            api.wake_outbox()
    return web.json_response(body)


_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; form-action 'self'; frame-ancestors 'none'",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}


def page(title: str, body: str, *, status: int = 200) -> web.Response:
    """A small self-contained HTML page: no script, nothing loaded from elsewhere."""
    text = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title></head><body><main><h1>{html.escape(title)}</h1>"
        f"{body}</main></body></html>"
    )
    return web.Response(
        text=text, status=status, content_type="text/html", charset="utf-8", headers=_PAGE_HEADERS
    )


def token_page(exc: TokenError) -> web.Response:
    """A refused link: 410 when expired, 403 otherwise; nothing is written."""
    expired = exc.code == "expired_token"
    text = "This link has expired." if expired else "This link is not valid."
    return page("Link not valid", f"<p>{text}</p>", status=410 if expired else 403)


async def confirm_page(request: web.Request) -> web.Response:
    """GET: a button that confirms; nothing changes on GET."""
    api = request.app[API]
    try:
        unpack(api.tokens.verify(request.match_info["token"], CONFIRM_PURPOSE), 4)
    except TokenError as exc:
        return token_page(exc)
    return page(
        "Confirm your subscription",
        '<form method="post"><button type="submit">Yes, subscribe me</button></form>',
    )


async def confirm(request: web.Request) -> web.Response:
    """POST: confirm the pending double opt-in the link was issued for.

    The consent table decides, under the contact's lock (``IntentKind.CONFIRM_LINK``): only a
    pending program is confirmed. Each POST is its own request (a fresh dedupe key): a token is
    the same all hour, so a key made from it would swallow a click meant for a new sign-up
    made after an opt-out, and answer "confirmed" while the state stayed pending.
    """
    deps, api = request.app[DEPS], request.app[API]
    token = request.match_info["token"]
    try:
        channel, sender, program, address = unpack(api.tokens.verify(token, CONFIRM_PURPOSE), 4)
    except TokenError as exc:
        return token_page(exc)
    if sender not in api.catalogs or not api.catalogs[sender].has_program(program):
        return page("Link not valid", "<p>This subscription no longer exists.</p>", status=404)
    outcome = await deps.pipeline.handle(
        InboundMessage.decided(
            channel=Channel(channel),
            sender=sender,
            contact=address,
            method=Method.WEB_FORM,
            dedupe_key=f"confirm:{TokenCodec.fingerprint(token)}:{uuid.uuid4().hex}",
            kind=IntentKind.CONFIRM_LINK,
            program=program,
            evidence={
                "source": "confirm_link",
                "token": TokenCodec.fingerprint(token),
                "ip": client_address(request),
                "user_agent": request.headers.get("User-Agent", "")[:500],
            },
            by_subject=True,  # the link went to this mailbox: the person's own opt-in
        )
    )
    if outcome.decision is not None and outcome.decision.transitions:
        return page("Subscribed", "<p>Thank you: your subscription is confirmed.</p>")
    key = normalize_address(Channel(channel), address, api.default_region)
    states = await api.privacy.consent_of(channel, key)
    if states.get((sender, program)) == "opted_in":
        return page("Already subscribed", "<p>Your subscription was already confirmed.</p>")
    return page(
        "Nothing to confirm",
        "<p>This link no longer applies: there is no pending subscription for it, and nothing"
        " was changed. Sign up again to receive a new link.</p>",
    )


async def send(request: web.Request) -> web.Response:
    """Queue one message if the gate allows it; refuse with ``send_refused`` otherwise."""
    await require(request, "send")
    deps, api = request.app[DEPS], request.app[API]
    data = parse_json(await read_body(request, deps.max_body_bytes))
    sender, program, channel = scope = scope_of(data)
    catalog_for(api, sender, program, channel)
    if "at" in data:
        raise BadRequest("a send leaves now, or when the send rules allow; 'at' is for the gate")
    terms = terms_of(deps, data, scope)
    text = string_field(data, "body", max_len=deps.max_body_bytes)
    check_body(
        channel,
        text,
        max_segments=api.max_send_segments,
        max_email_chars=api.max_send_email_chars,
    )
    try:
        address, send_to = key_and_send_address(
            channel, string_field(data, "to", max_len=254), api.default_region
        )
    except BadInput:
        return _refused("invalid_address")
    not_before = None
    rules = deps.gate.rules
    if rules is not None and terms is not None and terms.batch is not None:
        # The rules first (their answer needs the consent's date); the consent itself is
        # decided again under the contact's lock by queue_send.
        answer = await deps.gate.check(sender, program, channel, address, terms)
        if answer.reason is GateReason.DEFERRED and answer.not_before is not None:
            not_before = answer.not_before
        elif not answer.allowed:
            return _refused(answer.reason.value, answer.detail)
    queued = await api.sends.queue_send(
        channel.value,
        sender,
        program,
        address,
        text,
        recipient=send_to,
        not_before=None if not_before is None or rules is None else rules.clock.to_real(not_before),
    )
    if isinstance(queued, str):
        return _refused(queued)
    api.wake_outbox()
    if not_before is not None:
        body = {"status": "deferred", "outbox_id": queued, "not_before": not_before.isoformat()}
        return web.json_response(body, status=202)
    return web.json_response({"status": "queued", "outbox_id": queued}, status=202)


def _refused(reason: str, detail: str | None = None) -> web.Response:
    """The error shape plus ``reason``, a gate reason (``opted_out``, ``no_consent``, ...),
    and the send rule's ``detail`` when one refused."""
    error = {
        "code": SendRefused.code,
        "reason": reason,
        "message": f"the recipient may not be messaged ({reason})",
    }
    if detail is not None:
        error["detail"] = detail
    return web.Response(
        body=orjson.dumps({"error": error}), status=422, content_type="application/json"
    )


def contact_pairs(payload: bytes) -> list[tuple[str, str]]:
    """The (channel, address) pairs of a preference-page token."""
    parts = payload.decode("utf-8", "replace").split("\0")
    if len(parts) not in (2, 4) or parts[0::2] != list(dict.fromkeys(parts[0::2])):
        raise TokenError("token payload has the wrong shape")
    return list(zip(parts[0::2], parts[1::2], strict=True))


async def preference_link(request: web.Request) -> web.Response:
    """``{channel, contact}`` or ``{contacts: [{channel, contact}, ...]}`` (one per channel)
    -> ``{url}``: the person's own preference page, every channel on one page."""
    await require(request, "write")
    deps, api = request.app[DEPS], request.app[API]
    data = parse_json(await read_body(request, deps.max_body_bytes))
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object")
    entries = data.get("contacts", [data])
    if not isinstance(entries, list) or not 1 <= len(entries) <= len(Channel):
        raise BadRequest("field 'contacts' must list one contact per channel")
    parts: list[str] = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise BadRequest("each contact must be an object {channel, contact}")
        channel = channel_field(entry)
        if channel.value in parts[0::2]:
            raise BadRequest("one contact per channel")
        raw_contact = string_field(entry, "contact", max_len=254)
        # As issued: the page derives the contact key from it (gateway/addresses.py).
        parts += [channel.value, key_and_send_address(channel, raw_contact, api.default_region)[1]]
    token = api.tokens.issue(pack(*parts), PREFERENCES_PURPOSE, ttl_seconds=api.link_ttl_seconds)
    return web.json_response({"url": f"{api.public_base_url}/p/{token}"})


class Pipeline(Protocol):
    """``gateway.pipeline.Pipeline`` as the sweep sees it."""

    async def handle(self, message: InboundMessage) -> Outcome:
        """Commit ``message``."""


async def expire_pending(
    pipeline: Pipeline,
    privacy: Privacy,
    catalogs: Mapping[str, SenderCatalog],
    confirm_ttl_seconds: int,
) -> int:
    """Close double opt-ins left unconfirmed past ``confirm_ttl_seconds``; return how many.

    Each becomes ``opted_out`` through the pipeline (method ``api``, no reply, the reason in
    the evidence): never a send, and a later YES or join keyword asks again from the start.
    The dedupe key names the row's version, so instances sweeping at once record it once.
    The composition root runs it every ``SWEEP_SECONDS`` (``ApiEdge.sweep_pending``),
    whether or not the instance serves HTTP.
    """
    rows = await privacy.expired_pending(confirm_ttl_seconds, 500)
    for channel, sender, program, address, contact_id, version in rows:
        if sender not in catalogs:
            continue
        await pipeline.handle(
            InboundMessage.decided(
                channel=Channel(channel),
                sender=sender,
                contact=address,
                method=Method.API,
                dedupe_key=f"expire:{contact_id}:{sender}:{program}:{version}",
                kind=IntentKind.OPT_OUT,
                program=program,
                evidence={"reason": "double opt-in not confirmed in time"},
                suppress_replies=True,
                # The person revoked nothing: the sign-up lapsed. Revoke-all must not turn
                # it into an opt-out of their other programs (docs/rules.md, revoke-all).
                revokes=False,
            )
        )
    return len(rows)


def register(app: web.Application) -> None:
    """Add the routes."""
    app.router.add_post("/v1/consent", capture)
    app.router.add_get("/c/{token}", confirm_page)
    app.router.add_post("/c/{token}", confirm)
    app.router.add_post("/v1/send", send)
    app.router.add_post("/v1/preferences/links", preference_link)
