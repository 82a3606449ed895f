"""Operations endpoints (I/O layer): liveness, readiness and Prometheus metrics; no auth."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.edges.http.server import DEPS, query_choice


async def healthz(_request: web.Request) -> web.Response:
    """Liveness: the event loop answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness (gateway/health.py): 200 when every promise holds, else 503 naming what
    does not; ``?scope=intake`` checks only what recording an opt-out needs, and any other
    ``scope`` is a 400 (a typo must not quietly run the other check)."""
    intake = query_choice(request, "scope", ("intake",)) == "intake"
    report = await request.app[DEPS].readiness.check(intake_only=intake)
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
