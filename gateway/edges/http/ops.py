"""Operations endpoints (I/O layer): liveness, readiness and Prometheus metrics; no auth."""

from __future__ import annotations

import asyncpg
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.edges.http.server import DEPS


async def healthz(_request: web.Request) -> web.Response:
    """Liveness: the event loop answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: Postgres answers; the cache state is reported, not required."""
    deps = request.app[DEPS]
    try:
        async with deps.pool.acquire(timeout=2) as conn:
            await conn.fetchval("SELECT 1", timeout=2)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return web.json_response({"status": "unavailable", "database": "down"}, status=503)
    cache = "ok" if deps.cache_usable() else "bypassed"
    return web.json_response({"status": "ready", "database": "ok", "cache": cache})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition."""
    body = generate_latest(request.app[DEPS].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def register(app: web.Application) -> None:
    """Add the routes."""
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
