"""Shared fixtures: a private schema per test on the real PostgreSQL, a private Redis prefix.

PostgreSQL and Redis are the machine's own (``GATEWAY_TEST_DATABASE_URL``,
``GATEWAY_TEST_REDIS_URL``; defaults: 127.0.0.1:5432/test and 127.0.0.1:6379). Each test
gets its own schema, dropped afterwards, and its own Redis key prefix, deleted afterwards,
so tests never see each other's data.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from gateway.app import Gateway
from gateway.messages import InboundMessage, Method
from gateway.settings import CacheSettings, DatabaseSettings, HttpSettings, Settings, load_settings
from keywords.model import Channel

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config" / "gateway.toml"
PG_URL = os.environ.get("GATEWAY_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("GATEWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SECRET = "test-secret-key-that-is-long-enough-0123456789"
SHORT_CODE = "12345"


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


def make_settings(
    schema: str, prefix: str, *, redis_url: str | None = REDIS_URL, dsn: str = PG_URL
) -> Settings:
    """Settings from the example config, pointed at this test's schema and prefix."""
    base = load_settings(CONFIG, {"GATEWAY_SECRET_KEY": SECRET})
    return dataclasses.replace(
        base,
        http=HttpSettings(host="127.0.0.1", port=0),
        database=DatabaseSettings(schema=schema, pool_min=1, pool_max=6),
        cache=CacheSettings(key_prefix=prefix, health_interval_seconds=0.05),
        database_url=dsn,
        redis_url=redis_url,
    )


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


def sms(text: str, *, contact: str = "+14155550123", key: str | None = None,
        sender: str = SHORT_CODE) -> InboundMessage:  # fmt: skip
    """An inbound SMS as an edge would build it."""
    return InboundMessage(
        channel=Channel.SMS,
        sender=sender,
        contact=contact,
        text=text,
        method=Method.SMS_KEYWORD,
        dedupe_key=key or f"test:{uuid.uuid4().hex}",
        received_at=datetime.now(UTC),
        evidence={"message_id": key or "n/a"},
    )
