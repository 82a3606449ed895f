"""Without Redis, one instance per schema: a second process refuses to start, and an
instance that lost its lock to another ends instead of answering from a stale cache."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest
from processes import GatewayProcess
from support import PG_URL, REDIS_URL, eventually

pytestmark = pytest.mark.slow

NO_REDIS = {"GATEWAY_DATABASE_URL": PG_URL}
WITH_REDIS = {"GATEWAY_DATABASE_URL": PG_URL, "GATEWAY_REDIS_URL": REDIS_URL}
LOCK_CLASS = 0x63670001  # gateway/store/instance_lock.py


def _refused(gw: GatewayProcess) -> str:
    with pytest.raises(RuntimeError, match="gateway exited"):
        gw.start()
    assert gw.proc is not None
    assert 2 == gw.proc.wait(timeout=10)
    gw.proc = None
    return gw.log.read_text()


async def test_a_second_instance_without_redis_refuses_to_start(
    tmp_path: Path, schema: str, redis_prefix: str
) -> None:
    """A runs without Redis; B without Redis, and C with Redis, on the same schema both exit
    with status 2 naming the reason; once A stopped, B starts."""
    a = GatewayProcess(tmp_path, schema=schema, redis_prefix=redis_prefix, env=NO_REDIS, name="a")
    b = GatewayProcess(tmp_path, schema=schema, redis_prefix=redis_prefix, env=NO_REDIS, name="b")
    c = GatewayProcess(tmp_path, schema=schema, redis_prefix=redis_prefix, env=WITH_REDIS,
                       name="c")  # fmt: skip
    try:
        a.start()
        assert "without GATEWAY_REDIS_URL only one instance may use a schema" in _refused(b)
        assert "an instance without GATEWAY_REDIS_URL is running on schema" in _refused(c)
        assert 0 == a.stop()
        b.start()
    finally:
        a.stop()
        b.stop()


async def test_instances_with_redis_share_a_schema_and_exclude_one_without(
    tmp_path: Path, schema: str, redis_prefix: str
) -> None:
    """Two instances with Redis run side by side; one without Redis is refused meanwhile."""
    a = GatewayProcess(tmp_path, schema=schema, redis_prefix=redis_prefix, env=WITH_REDIS,
                       name="a")  # fmt: skip
    b = GatewayProcess(tmp_path, schema=schema, redis_prefix=redis_prefix, env=WITH_REDIS,
                       name="b")  # fmt: skip
    c = GatewayProcess(tmp_path, schema=schema, redis_prefix=redis_prefix, env=NO_REDIS, name="c")
    try:
        a.start()
        b.start()
        assert "another gateway instance is running on schema" in _refused(c)
    finally:
        a.stop()
        b.stop()


async def test_an_instance_that_lost_its_lock_to_another_ends_non_zero(
    tmp_path: Path, schema: str, redis_prefix: str
) -> None:
    """A's lock connection is cut (a database restart would do it) and another session takes
    the freed lock before A reconnects: A can no longer be sure it is alone and exits 70."""
    a = GatewayProcess(tmp_path, schema=schema, redis_prefix=redis_prefix, env=NO_REDIS, name="a")
    other = await asyncpg.connect(PG_URL)
    try:
        a.start()
        killed = await other.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks"
            " WHERE locktype = 'advisory' AND classid = $1 AND objid::int = hashtext($2)",
            LOCK_CLASS,
            schema,
        )
        assert 1 == killed
        await eventually(  # the lock is free once the killed backend has gone
            lambda: other.fetchval(
                "SELECT pg_try_advisory_lock($1, hashtext($2))", LOCK_CLASS, schema
            ),
            timeout=5,
            message="the killed backend's lock was never freed",
        )
        assert a.proc is not None
        assert 70 == await asyncio.to_thread(a.proc.wait, 30)
        a.proc = None
        assert "another instance took the lock" in a.log.read_text()
    finally:
        await other.close()
        a.stop()
