"""Benchmark clean-up: leave the shared PostgreSQL and Redis as they were found."""

from __future__ import annotations

import redis.asyncio as aioredis


async def drop_redis_prefix(url: str, prefix: str) -> int:
    """Delete every key under ``<prefix>:``; return how many."""
    client = aioredis.Redis.from_url(url)
    deleted = 0
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(f"{prefix}:*", count=10_000):
            batch.append(key)
            if len(batch) >= 10_000:
                deleted += await client.delete(*batch)
                batch.clear()
        if batch:
            deleted += await client.delete(*batch)
    finally:
        await client.aclose()
    return deleted
