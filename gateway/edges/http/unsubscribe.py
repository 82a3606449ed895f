"""One-click unsubscribe edge (I/O layer): RFC 8058 POST, the GET confirm page, header service.

- ``POST /u/{token}``: the RFC 8058 one-click request. The token decides, not the body: Gmail
  and Yahoo send ``List-Unsubscribe=One-Click`` as urlencoded or multipart form data, the
  RFC's own section 8 multipart example is malformed, and no cookie or login is ever sent
  (RFC 8058 section 3.2). 200 with a short page after the commit, never a redirect (section
  3.2 again: "MUST NOT ... redirect"). The consent state decides, not a dedupe window: every
  POST is its own request, a POST that finds the person opted in opts them out (whenever it
  comes: after a re-subscription the same link works again), and one that finds them out
  changes nothing and sends nothing, because the consent table says so. The page tells which
  it was.
- ``GET /u/{token}``: never unsubscribes. Link scanners (Safe Links, Proofpoint, Mimecast)
  fetch every URL and some run JavaScript, so the page has no script at all (and a CSP that
  forbids any) and asks a person to press a button that POSTs the form.
- ``POST /v1/email/headers``: signed JSON ``{list, to, program?}`` -> the header values a
  campaign tool puts in its mail (``List-Unsubscribe``, ``List-Unsubscribe-Post``).
"""

from __future__ import annotations

import html
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from aiohttp import web

from gateway.edges.http.client_address import client_address
from gateway.edges.http.server import (
    DEPS,
    BadRequest,
    Register,
    read_body,
    signed_json,
    string_field,
)
from gateway.email.links import ONE_CLICK_VALUE, Target, UnsubscribeLinks
from gateway.errors import UnknownSender
from gateway.logs import mask_email
from gateway.messages import InboundMessage, Method
from gateway.security.tokens import ExpiredToken, ForgedToken, TokenCodec, TokenError
from keywords.model import Channel, Intent, IntentKind, MatchKind


class Revocations(Protocol):
    """Tokens revoked one by one (``gateway.store.email_marks.EmailMarks``)."""

    async def is_revoked(self, fingerprint: str) -> bool:
        """True if the token with this fingerprint was revoked."""


@dataclass(frozen=True, slots=True)
class UnsubscribeDeps:
    """What these routes need beyond ``HttpDeps``."""

    links: UnsubscribeLinks
    revocations: Revocations


UNSUB = web.AppKey("unsubscribe", UnsubscribeDeps)
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",  # the token must not leak to another site
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
}
_STYLE = "body{font-family:sans-serif;max-width:32em;margin:3em auto;padding:0 1em}"


def page(title: str, body: str, *, status: int = 200) -> web.Response:
    """A small self-contained HTML page (no script, no external resources)."""
    text = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return web.Response(
        text=text, status=status, content_type="text/html", charset="utf-8", headers=_PAGE_HEADERS
    )


def token_refusal(exc: Exception) -> web.Response:
    """4xx for a token we will not act on; nothing is written (docs/DESIGN.md, invariant 7)."""
    if isinstance(exc, ExpiredToken):
        status, text = 410, "This unsubscribe link has expired. Reply to any of our emails instead."
    elif isinstance(exc, ForgedToken):
        status, text = 403, "This unsubscribe link is not valid."
    elif isinstance(exc, UnknownSender):
        status, text = 404, "This mailing list no longer exists."
    else:
        status, text = 400, "This unsubscribe link is malformed."
    return page("Link not valid", f"<p>{html.escape(text)}</p>", status=status)


async def _target(request: web.Request) -> Target:
    """The token's target; a ``TokenError`` when forged, expired or revoked."""
    deps = request.app[UNSUB]
    token = request.match_info["token"]
    target = deps.links.target(token)
    if await deps.revocations.is_revoked(TokenCodec.fingerprint(token)):
        raise ForgedToken("token revoked")
    return target


def one_click_message(
    links: UnsubscribeLinks, token: str, target: Target, evidence: dict[str, str]
) -> InboundMessage:
    """The pipeline input for a one-click request: an explicit opt-out, never classified text."""
    catalog = links.lists[target.list_id]
    kind = IntentKind.OPT_OUT if target.program else IntentKind.OPT_OUT_ALL
    intent = Intent(
        kind,
        MatchKind.EXACT,
        language=catalog.default_language,
        program=target.program,
        keyword="one-click",
    )
    return InboundMessage(
        channel=Channel.EMAIL,
        sender=target.list_id,
        contact=target.address,
        text=ONE_CLICK_VALUE,
        method=Method.ONE_CLICK,
        # Each POST is a request of its own: a token is the same all hour, so a key made from
        # it (and the hour) swallowed a click after a re-subscription. A retried POST finds
        # the person opted out and the consent table makes it a no-op (opted_out + opt_out:
        # unchanged, no reply), under the contact's lock, on every instance.
        dedupe_key=f"oneclick:{TokenCodec.fingerprint(token)}:{uuid.uuid4().hex}",
        received_at=datetime.now(UTC),
        evidence=evidence,
        intent=intent,
    )


async def confirm_page(request: web.Request) -> web.Response:
    """GET: show what the link does and a button; loading it changes nothing."""
    try:
        target = await _target(request)
    except (TokenError, UnknownSender) as exc:
        return token_refusal(exc)
    brand = request.app[UNSUB].links.lists[target.list_id].brand
    what = html.escape(brand if target.program is None else f"{brand} ({target.program})")
    body = (
        f"<p>Unsubscribe <strong>{html.escape(mask_email(target.address))}</strong> from "
        f"<strong>{what}</strong> emails?</p>"
        '<form method="post">'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<input type="hidden" name="source" value="confirm_page">'
        '<button type="submit" id="confirm">Unsubscribe</button></form>'
    )
    return page("Unsubscribe", body)


async def one_click(request: web.Request) -> web.Response:
    """POST: unsubscribe; 200 only after the commit (docs/DESIGN.md, invariant 1)."""
    links = request.app[UNSUB].links
    token = request.match_info["token"]
    try:
        target = await _target(request)
    except (TokenError, UnknownSender) as exc:
        return token_refusal(exc)
    # The body is evidence only (RFC 8058 section 3.1 names its content); a body that fails
    # to parse, such as the RFC's own section 8 multipart example, still unsubscribes.
    # A body past the limit gets 413 (no mail client sends more than a few dozen bytes).
    raw = await read_body(request, request.app[DEPS].max_body_bytes)
    evidence = {
        "source": "confirm_page" if b"confirm_page" in raw else "rfc8058",
        "ip": client_address(request),
        "user_agent": request.headers.get("User-Agent", "")[:512],
        "content_type": request.headers.get("Content-Type", "")[:200],
        "one_click_field": "present" if b"One-Click" in raw else "absent",
        "token": TokenCodec.fingerprint(token),
    }
    outcome = await request.app[DEPS].pipeline.handle(
        one_click_message(links, token, target, evidence)
    )
    brand = html.escape(links.lists[target.list_id].brand)
    if outcome.decision is not None and outcome.decision.transitions:
        return page(
            "Unsubscribed",
            f"<p>You are now unsubscribed. You will no longer receive these {brand} emails.</p>",
        )
    return page(
        "Already unsubscribed",
        f"<p>You were already unsubscribed from these {brand} emails; nothing was changed.</p>",
    )


async def header_service(request: web.Request) -> web.Response:
    """Signed JSON ``{list, to, program?}`` -> the RFC 8058 header values for one mail."""
    data = await signed_json(request, request.app[DEPS].max_body_bytes)
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object")
    program = data.get("program")
    if program is not None and not isinstance(program, str):
        raise BadRequest("field 'program' must be a string")
    target = Target(
        string_field(data, "list", max_len=254), string_field(data, "to", max_len=254), program
    )
    links = request.app[UNSUB].links
    headers = links.headers(target)
    token = links.token(target)
    return web.json_response(
        {
            "headers": headers,
            "url": links.url(token),
            "mailto": links.mailto(token),
            "message_id": links.message_id(target),
        }
    )


def registrar(deps: UnsubscribeDeps) -> Register:
    """A ``register(app)`` for ``build_app`` that serves these routes with ``deps``."""

    def register(app: web.Application) -> None:
        app[UNSUB] = deps
        app.router.add_get("/u/{token}", confirm_page)
        app.router.add_post("/u/{token}", one_click)
        app.router.add_post("/v1/email/headers", header_service)

    return register
