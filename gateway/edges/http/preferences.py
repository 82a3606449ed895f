"""Preference page (I/O layer): ``/p/{token}``, a signed link, no login, no JavaScript.

The token (``gateway/security/tokens.py``, purpose ``preferences``) carries the person's number
and/or email address, encrypted. ``GET`` lists every program of every sender on each of
those channels with its state and one toggle button each; it never changes anything (link
scanners fetch GETs). Each toggle is a plain ``<form method="post">`` with a
``<button role="switch">``, so Tab, Enter and Space work and no script is needed (WCAG
2.1.1 keyboard; GDPR art. 7(3): withdrawing must be as easy as giving). A change goes
through the pipeline with method ``preference_page``; the hidden ``nonce`` of the rendered
page makes a double submit one ledger event (invariant 3). After the commit we answer 303
to the page (Post/Redirect/Get).
"""

from __future__ import annotations

import html
import secrets
from urllib.parse import parse_qsl

from aiohttp import web

from gateway.addresses import normalize_address
from gateway.edges.http.auth import API
from gateway.edges.http.client_address import client_address
from gateway.edges.http.consent_api import PREFERENCES_PURPOSE, contact_pairs, page, token_page
from gateway.edges.http.server import DEPS, BadRequest, read_body
from gateway.errors import Suppressed
from gateway.messages import InboundMessage, Method
from gateway.security.tokens import TokenCodec, TokenError
from keywords.model import Channel, IntentKind

_LABEL = {
    "opted_in": "On",
    "pending": "Waiting for your confirmation (reply YES)",
    "opted_out": "Off",
    "none": "Off",
}
_STYLE = (
    "<style>body{font-family:sans-serif;max-width:40em;margin:2em auto;padding:0 1em}"
    "form{display:inline}li{margin:.6em 0}button{margin-left:.6em}"
    "button:focus{outline:3px solid #1a5fb4}</style>"
)


def _toggle(channel: str, sender: str, program: str, title: str, state: str, nonce: str) -> str:
    on = state == "opted_in"
    action = "off" if on else "on"
    label = f"Turn {action} {title}"
    return (
        f'<li><span id="s-{html.escape(sender)}-{html.escape(program)}">{html.escape(title)}: '
        f"{html.escape(_LABEL.get(state, 'Off'))}</span>"
        '<form method="post">'
        f'<input type="hidden" name="channel" value="{html.escape(channel)}">'
        f'<input type="hidden" name="sender" value="{html.escape(sender)}">'
        f'<input type="hidden" name="program" value="{html.escape(program)}">'
        f'<input type="hidden" name="nonce" value="{nonce}">'
        f'<button type="submit" name="action" value="{action}" role="switch"'
        f' aria-checked="{"true" if on else "false"}"'
        f' data-program="{html.escape(sender)}/{html.escape(program)}">'
        f"{html.escape(label)}</button>"
        "</form></li>"
    )


_KIND = {Channel.SMS.value: "Text messages", Channel.EMAIL.value: "Emails"}


async def show(request: web.Request) -> web.Response:
    """The page: each program of each sender on each of the token's channels, with a toggle."""
    api = request.app[API]
    try:
        pairs = contact_pairs(api.tokens.verify(request.match_info["token"], PREFERENCES_PURPOSE))
    except TokenError as exc:
        return token_page(exc)
    nonce = secrets.token_urlsafe(12)
    sections = []
    for channel, address in pairs:
        key = normalize_address(Channel(channel), address, api.default_region)
        states = await api.privacy.consent_of(channel, key)
        sections.append(f"<h2>{_KIND.get(channel, channel)}</h2>")
        for sender, catalog in sorted(api.catalogs.items()):
            if catalog.channel.value != channel:
                continue
            items = "".join(
                _toggle(
                    channel, sender, p.name, p.title, states.get((sender, p.name), "none"), nonce
                )
                for p in catalog.programs
            )
            heading = f"{html.escape(catalog.brand)} ({html.escape(sender)})"
            sections.append(f"<h3>{heading}</h3><ul>{items}</ul>")
    return page(
        "Your preferences",
        _STYLE
        + "<p>Choose what you get from us. Changes take effect at once.</p>"
        + "".join(sections),
    )


async def change(request: web.Request) -> web.StreamResponse:
    """One toggle: record the change, then show the page again."""
    deps, api = request.app[DEPS], request.app[API]
    token = request.match_info["token"]
    try:
        pairs = dict(contact_pairs(api.tokens.verify(token, PREFERENCES_PURPOSE)))
    except TokenError as exc:
        return token_page(exc)
    body = await read_body(request, 4_096)
    try:
        form = dict(parse_qsl(body.decode(), keep_blank_values=True))
    except UnicodeDecodeError as exc:
        raise BadRequest("form is not UTF-8") from exc
    channel, sender, program = (
        form.get("channel", ""),
        form.get("sender", ""),
        form.get("program", ""),
    )
    address = pairs.get(channel, "")
    action, nonce = form.get("action", ""), form.get("nonce", "")
    catalog = api.catalogs.get(sender)
    if (
        catalog is None
        or not address
        or catalog.channel.value != channel
        or not catalog.has_program(program)
        or action not in ("on", "off")
        or not 0 < len(nonce) <= 64
    ):
        raise BadRequest("unknown program or action")
    kind = IntentKind.JOIN if action == "on" else IntentKind.OPT_OUT
    try:
        await deps.pipeline.handle(
            InboundMessage.decided(
                channel=Channel(channel),
                sender=sender,
                contact=address,
                method=Method.PREFERENCE_PAGE,
                dedupe_key=f"pref:{TokenCodec.fingerprint(token)}:{nonce}:{sender}:{program}:{action}",
                kind=kind,
                program=program,
                evidence={
                    "source": "preference_page",
                    "ip": client_address(request),
                    "user_agent": request.headers.get("User-Agent", "")[:500],
                },
            )
        )
    except Suppressed:  # the writer refuses an opt-in for an erased address
        return page(
            "Not possible", "<p>You asked us to erase your data; we cannot message you.</p>"
        )
    raise web.HTTPSeeOther(location=request.path)


def register(app: web.Application) -> None:
    """Add the routes."""
    app.router.add_get("/p/{token}", show)
    app.router.add_post("/p/{token}", change)
