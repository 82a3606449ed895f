"""Shared fixtures: a private schema per test on the real PostgreSQL, a private Redis prefix.

PostgreSQL and Redis are the machine's own (``GATEWAY_TEST_DATABASE_URL``,
``GATEWAY_TEST_REDIS_URL``; defaults: 127.0.0.1:5432/test and 127.0.0.1:6379/15). Each test
gets its own schema, dropped afterwards, and its own Redis key prefix, deleted afterwards,
so tests never see each other's data.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
import redis.asyncio as aioredis
from support import PG_URL, REDIS_URL, SECRET, SHORT_CODE, count_rows, make_settings, sms

from gateway.app import Gateway
from gateway.settings import Settings

# Helpers live in tests/support.py; re-exported for tests that import them from here.
__all__ = ["PG_URL", "REDIS_URL", "SECRET", "SHORT_CODE", "count_rows", "make_settings", "sms"]


@pytest.fixture
def schema() -> Iterator[str]:
    """A fresh schema name; the schema is dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    import asyncio

    async def drop() -> None:
        conn = await asyncpg.connect(PG_URL)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A fresh Redis key prefix; its keys are deleted after the test."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    yield prefix
    import asyncio

    async def clean() -> None:
        client = aioredis.Redis.from_url(REDIS_URL)
        try:
            keys = [k async for k in client.scan_iter(f"{prefix}:*", count=1000)]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()

    asyncio.run(clean())


@pytest.fixture
def settings(schema: str, redis_prefix: str) -> Settings:
    """Settings for a gateway on the real PostgreSQL and Redis."""
    return make_settings(schema, redis_prefix)


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[Gateway]:
    """A running gateway (HTTP on an ephemeral port)."""
    async with Gateway(settings) as gw:
        yield gw


@pytest.fixture
async def db(settings: Settings, gateway: Gateway) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection to the test's schema, for assertions."""
    conn = await asyncpg.connect(PG_URL, server_settings={"search_path": settings.database.schema})
    yield conn
    await conn.close()
