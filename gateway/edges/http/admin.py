"""Admin API (I/O layer): programs and keywords changed at run time, and the audit log.

- ``PUT /v1/admin/senders/{sender}``: a whole sender definition as JSON, in the shape of a
  ``config/senders/*.toml`` file. It is validated exactly as ``gateway check-config``
  validates files (schema, reserved STOP/HELP families, the carrier-audit errors); a
  definition with errors is refused with 422 and changes nothing. Accepted, it is stored,
  recorded in the audit log and announced to every instance, which swap it in without a
  restart (see gateway/app/api_wiring.py).
- ``GET /v1/admin/senders``: what each instance serves now.
- ``PUT /v1/admin/rules/{name}``: one operator rule document, the TOML text of a file of
  ``[rules] operator_dir`` as the body (``application/toml`` or ``text/plain``, UTF-8). It
  is validated as such a file on top of the shipped table, the operator_dir files and the
  other stored documents; a weaker definition, a conflict, a window that never opens or a
  program the result cannot carry is 422 ``invalid_rules`` naming the document and key,
  and changes nothing. Accepted, it is stored, audited and live on every instance
  (gateway/app/rules_wiring.py). TOML, not JSON: it is the operator file's own format, so
  a file moves between operator_dir and the API unchanged, comments and all.
- ``DELETE /v1/admin/rules/{name}``: remove one (404 if there is none; 422 if the rest no
  longer loads without it, e.g. a holiday calendar another document closes on).
- ``GET /v1/admin/rules``: the rule set this instance serves, where each rule, category
  policy, consent duration and calendar is defined, and the stored documents.
- ``GET /v1/admin/audit?limit=``: the newest audit records (key changes, sender changes,
  rule changes, data-subject requests); ``limit`` is 1..1000 in ASCII digits (default
  100), else 400.

All need scope ``admin``.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from gateway.edges.http.auth import API, RulesApi, require
from gateway.edges.http.gate_api import parse_json
from gateway.edges.http.server import BadRequest, query_int, read_body

_MAX_DEFINITION = 256 * 1024
# A rule document's name: a file name of operator_dir without ".toml" (migration 007).
_RULES_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")
# application/toml is registered (IANA, 2024); text/plain for clients that know no better.
# Anything else (JSON above all) is 415: a JSON body would otherwise read as broken TOML.
_TOML_TYPES = frozenset({"application/toml", "text/plain"})


async def put_sender(request: web.Request) -> web.Response:
    """Replace one sender's programs, keywords and templates."""
    principal = await require(request, "admin")
    api = request.app[API]
    data = parse_json(await read_body(request, _MAX_DEFINITION))
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object (a sender file's tables)")
    sender = request.match_info["sender"]
    revision, warnings = await api.admin.update_sender(sender, data, principal.id)
    return web.json_response({"sender": sender, "revision": revision, "warnings": warnings})


async def list_senders(request: web.Request) -> web.Response:
    """Senders, their programs and keywords, as this instance serves them now."""
    await require(request, "admin")
    out: list[dict[str, Any]] = []
    for sender, catalog in sorted(request.app[API].catalogs.items()):
        out.append(
            {
                "sender": sender,
                "channel": catalog.channel.value,
                "source": catalog.source,
                "programs": [
                    {
                        "name": p.name,
                        "title": p.title,
                        "default": p.default,
                        "double_opt_in": p.double_opt_in,
                        "keywords": list(p.keywords),
                    }
                    for p in catalog.programs
                ],
                "keywords": sorted({k.text for k in catalog.keywords if not k.reserved}),
            }
        )
    return web.json_response({"senders": out})


async def audit_log(request: web.Request) -> web.Response:
    """The newest audit records first."""
    await require(request, "admin")
    limit = query_int(request, "limit", default=100, low=1, high=1_000)
    return web.json_response({"records": await request.app[API].admin.audit_log(limit)})


def _rules(request: web.Request) -> RulesApi:
    rules = request.app[API].rules
    if rules is None:
        raise web.HTTPNotFound  # a gate built without send rules (tests only)
    return rules


def _rules_name(request: web.Request) -> str:
    name = request.match_info["name"]
    if not _RULES_NAME.fullmatch(name):
        raise BadRequest("the name must be 1-64 of a-z, 0-9, '_' and '-', starting with a-z")
    return name


async def put_rules(request: web.Request) -> web.Response:
    """Store one operator rule document (TOML), validated as an operator_dir file."""
    principal = await require(request, "admin")
    rules = _rules(request)
    name = _rules_name(request)
    if request.content_type not in _TOML_TYPES:
        raise web.HTTPUnsupportedMediaType()
    try:
        text = (await read_body(request, _MAX_DEFINITION)).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest("body is not UTF-8") from exc
    revision = await rules.put(name, text, principal.id)
    return web.json_response({"name": name, "revision": revision})


async def delete_rules(request: web.Request) -> web.Response:
    """Remove one operator rule document."""
    principal = await require(request, "admin")
    rules = _rules(request)
    name = _rules_name(request)
    revision = await rules.delete(name, principal.id)
    if revision is None:
        raise web.HTTPNotFound
    return web.json_response({"name": name, "deleted_revision": revision})


async def list_rules(request: web.Request) -> web.Response:
    """The rule set this instance serves now, and the stored documents."""
    await require(request, "admin")
    return web.json_response(await _rules(request).summary())


def register(app: web.Application) -> None:
    """Add the routes."""
    app.router.add_get("/v1/admin/rules", list_rules)
    app.router.add_put("/v1/admin/rules/{name}", put_rules)
    app.router.add_delete("/v1/admin/rules/{name}", delete_rules)
    app.router.add_put("/v1/admin/senders/{sender}", put_sender)
    app.router.add_get("/v1/admin/senders", list_senders)
    app.router.add_get("/v1/admin/audit", audit_log)
