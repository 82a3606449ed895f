"""Admin API (I/O layer): programs and keywords changed at run time, and the audit log.

- ``PUT /v1/admin/senders/{sender}``: a whole sender definition as JSON, in the shape of a
  ``config/senders/*.toml`` file. It is validated exactly as ``gateway check-config``
  validates files (schema, reserved STOP/HELP families, the carrier-audit errors); a
  definition with errors is refused with 422 and changes nothing. Accepted, it is stored,
  recorded in the audit log and announced to every instance, which swap it in without a
  restart (see gateway/app/api_wiring.py).
- ``GET /v1/admin/senders``: what each instance serves now.
- ``GET /v1/admin/audit?limit=``: the newest audit records (key changes, sender changes,
  data-subject requests); ``limit`` is 1..1000 in ASCII digits (default 100), else 400.

All need scope ``admin``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.edges.http.auth import API, require
from gateway.edges.http.gate_api import parse_json
from gateway.edges.http.server import BadRequest, query_int, read_body

_MAX_DEFINITION = 256 * 1024


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


def register(app: web.Application) -> None:
    """Add the routes."""
    app.router.add_put("/v1/admin/senders/{sender}", put_sender)
    app.router.add_get("/v1/admin/senders", list_senders)
    app.router.add_get("/v1/admin/audit", audit_log)
