"""The pool's release without asyncpg's reset query (gateway/store/db.py ``_keep_session``):
a released connection still comes back clean, with the settings every connection starts with.

A listener left on a pooled connection is reported by asyncpg on release (InterfaceWarning,
an error under this suite's warning filter), so no test passes with one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from support import PG_URL

from gateway.settings import DatabaseSettings
from gateway.store.db import create_pool


@pytest.fixture
async def pool(schema: str) -> AsyncIterator[asyncpg.Pool]:
    found = await create_pool(PG_URL, DatabaseSettings(schema=schema, pool_min=1, pool_max=3))
    yield found
    await found.close()


async def test_a_transaction_left_open_is_rolled_back_on_release(pool: asyncpg.Pool) -> None:
    """A caller that leaves without committing (a cancelled task, a bug) writes nothing, and
    the next user of the connection is not inside its transaction."""
    async with pool.acquire() as conn:
        await conn.execute("CREATE TABLE IF NOT EXISTS pool_probe (n int)")
    async with pool.acquire() as conn:
        pid = conn.get_server_pid()
        transaction = conn.transaction()
        await transaction.start()
        await conn.execute("INSERT INTO pool_probe VALUES (1)")
    async with pool.acquire() as conn:
        assert pid == conn.get_server_pid()  # the same session, pool_max notwithstanding
        assert not conn.is_in_transaction()
        assert 0 == await conn.fetchval("SELECT count(*) FROM pool_probe")


async def test_the_session_keeps_its_schema_and_durable_commits(
    pool: asyncpg.Pool, schema: str
) -> None:
    """search_path and synchronous_commit are the session's own (set at connect), so a
    SET LOCAL inside a transaction never outlives it."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL synchronous_commit = off")
        await conn.execute("SET LOCAL search_path = public")
    async with pool.acquire() as conn:
        assert "on" == await conn.fetchval("SHOW synchronous_commit")
        assert schema == await conn.fetchval("SHOW search_path")
