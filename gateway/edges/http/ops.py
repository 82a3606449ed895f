"""Operations endpoints (I/O layer): liveness, readiness and Prometheus metrics; no auth."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.edges.http.server import DEPS, error_response

SCOPES = ("intake",)  # /readyz?scope=...; absent: every check


async def healthz(_request: web.Request) -> web.Response:
    """Liveness: the event loop answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness (gateway/health.py): 200 when every promise holds, else 503 naming what
    does not; ``?scope=intake`` checks only what recording an opt-out needs. Any other
    scope is 400: a probe with a typo would otherwise get the full check it did not ask for."""
    scope = request.query.get("scope")
    if scope is not None and scope not in SCOPES:
        return error_response(400, "bad_request", "scope must be 'intake' or absent")
    report = await request.app[DEPS].readiness.check(intake_only=scope == "intake")
    return web.json_response(report.body, status=200 if report.ready else 503)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition."""
    body = generate_latest(request.app[DEPS].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def register(app: web.Application) -> None:
    """Add the routes."""
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
