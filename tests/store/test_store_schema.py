"""The schema: docs/schema.sql is what the migrations build, and the runner applies each file once.

Regenerate the file with `make schema` when a migration changes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from support import PG_URL, ROOT

from gateway.errors import ConfigError
from gateway.store import db as db_module
from gateway.store.db import _SQUASHED, _migrations, migrate
from gateway.store.schema_dump import render

# A file after every real one (002_audit.sql and up follow the baseline already).
LATER = (999, "999_later.sql", "CREATE TABLE later (id integer PRIMARY KEY);")


@pytest.fixture
async def conn() -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(PG_URL)
    try:
        yield connection
    finally:
        await connection.close()


async def _records(conn: asyncpg.Connection, schema: str) -> list[tuple[int, str]]:
    rows = await conn.fetch(
        f'SELECT version, name FROM "{schema}".schema_migrations ORDER BY version'  # noqa: S608
    )
    return [(r["version"], r["name"]) for r in rows]


async def test_docs_schema_sql_is_what_the_migrations_build(
    conn: asyncpg.Connection, schema: str
) -> None:
    """A schema migrated by the runner, described from the catalogs, equals docs/schema.sql."""
    await migrate(conn, schema)
    written = (ROOT / "docs" / "schema.sql").read_text(encoding="utf-8")
    assert written == await render(conn, schema), "docs/schema.sql is stale: run `make schema`"


async def test_a_new_schema_gets_the_baseline_then_each_later_file_once(
    conn: asyncpg.Connection, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migration 002 and up are applied after the baseline, once, and recorded."""
    real = _migrations()
    assert "001_baseline.sql" == real[0][1]
    assert [name for _, name, _ in real] == await migrate(conn, schema)
    monkeypatch.setattr(db_module, "_migrations", lambda: [*real, LATER])
    assert ["999_later.sql"] == await migrate(conn, schema)
    assert [] == await migrate(conn, schema)
    assert [*((v, n) for v, n, _ in real), (999, "999_later.sql")] == await _records(conn, schema)
    assert 0 == await conn.fetchval(f'SELECT count(*) FROM "{schema}".later')  # noqa: S608


async def test_a_schema_built_by_the_squashed_files_is_adopted_and_migrates_on(
    conn: asyncpg.Connection, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records of the files squashed into the baseline become the baseline's: nothing is
    applied again, and a new 002 is not mistaken for the old 002."""
    real = _migrations()
    monkeypatch.setattr(db_module, "_migrations", lambda: real[:1])  # what the old files built
    await migrate(conn, schema)
    await conn.execute(f'DELETE FROM "{schema}".schema_migrations')  # noqa: S608
    for name in _SQUASHED:
        await conn.execute(
            f'INSERT INTO "{schema}".schema_migrations (version, name) VALUES ($1, $2)',  # noqa: S608
            int(name[:3]),
            name,
        )
    monkeypatch.setattr(db_module, "_migrations", lambda: [*real, LATER])
    later = [name for _, name, _ in real[1:]]
    assert [*later, "999_later.sql"] == await migrate(conn, schema)
    assert [*((v, n) for v, n, _ in real), (999, "999_later.sql")] == await _records(conn, schema)


async def test_a_schema_part_way_through_the_squashed_files_is_refused(
    conn: asyncpg.Connection, schema: str
) -> None:
    """A schema that lacks some of the squashed files is not the baseline's: refused, naming
    what it lacks, and its records are left as they were."""
    await migrate(conn, schema)
    await conn.execute(f'DELETE FROM "{schema}".schema_migrations')  # noqa: S608
    for name in _SQUASHED[:9]:
        await conn.execute(
            f'INSERT INTO "{schema}".schema_migrations (version, name) VALUES ($1, $2)',  # noqa: S608
            int(name[:3]),
            name,
        )
    with pytest.raises(ConfigError, match=r"lacks 010_email_reports\.sql, 011_"):
        await migrate(conn, schema)
    assert list(_SQUASHED[:9]) == [name for _, name in await _records(conn, schema)]
