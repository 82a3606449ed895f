"""Database access (I/O layer): the asyncpg pool, migrations, and the embedded PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

import asyncpg

from gateway.errors import ConfigError, TemporaryFailure
from gateway.settings import DatabaseSettings, Settings

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    # What a function that runs queries accepts: a plain or a pooled connection.
    Connection: TypeAlias = asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]

# What a database call raises when PostgreSQL is down, slow or dropped the connection: the
# callers turn these into ``TemporaryFailure`` (the peer retries) or retry themselves.
DB_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


@asynccontextmanager
async def connection(pool: asyncpg.Pool) -> AsyncIterator[Connection]:
    """A pooled connection; any database failure while it is held is ``TemporaryFailure``,
    so an edge answers "retry" (ack after commit: nothing was acknowledged)."""
    try:
        async with pool.acquire() as conn:
            yield conn
    except DB_ERRORS as exc:
        raise TemporaryFailure("the database is unavailable") from exc


async def ping(pool: asyncpg.Pool, seconds: float) -> None:
    """One round trip on a pooled connection (readiness); raises one of ``DB_ERRORS``."""
    async with pool.acquire(timeout=seconds) as conn:
        await conn.fetchval("SELECT 1", timeout=seconds)


async def current_database(conn: asyncpg.Connection) -> str:
    """The name of the database ``conn`` is connected to."""
    name: str = await conn.fetchval("SELECT current_database()")
    return name


# Any number: every gateway instance takes this advisory lock to migrate, one at a time.
_MIGRATION_LOCK = 0x636F6E73

# Before the first release the migrations were squashed into 001_baseline.sql, which builds
# exactly the schema these built. A schema they built is adopted: its records become the
# baseline's, so that a later file numbered like one of them (002, ...) is still applied.
_BASELINE = "001_baseline.sql"
_SQUASHED = (
    "001_initial.sql", "002_smpp_receipts.sql", "003_email_edge.sql", "004_http_api.sql",
    "005_outbox_in_flight.sql", "006_writer_record.sql", "007_writer_row_types.sql",
    "008_writer_record_rows.sql", "009_sms_parts.sql", "010_email_reports.sql",
    "011_addresses_and_suppression_keys.sql", "012_outbox_waiting.sql",
    "017_api_key_last_use.sql",
)  # fmt: skip


def _migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every file in migrations/, in order of version.

    A file is ``NNN_what.sql``; ``NNN`` is its version and is applied once per schema.
    """
    found: dict[int, tuple[int, str, str]] = {}
    for entry in resources.files("gateway.store.migrations").iterdir():
        name = entry.name
        if name.endswith(".sql"):
            version = int(name.split("_", 1)[0])
            if version in found:
                raise RuntimeError(f"migrations {found[version][1]} and {name} share a number")
            found[version] = (version, name, entry.read_text(encoding="utf-8"))
    return [found[version] for version in sorted(found)]


async def _adopt_squashed(conn: asyncpg.Connection, schema: str) -> None:
    """Rewrite the records of a schema built by the squashed migrations as the baseline's.

    Such a schema equals the baseline's only if every squashed file was applied; one that
    stopped part-way is refused, naming what it lacks, rather than guessed at.
    """
    rows = await conn.fetch(
        "DELETE FROM schema_migrations WHERE name = ANY($1::text[]) RETURNING name, applied_at",
        _SQUASHED,
    )
    if not rows:
        return
    missing = sorted(set(_SQUASHED) - {r["name"] for r in rows})
    if missing:
        raise ConfigError(
            f"schema {schema!r} was built by migrations from before {_BASELINE} and lacks"
            f" {', '.join(missing)}; drop the schema, or finish it with a checkout that"
            " still has those files"
        )
    await conn.execute(
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (1, $1, $2)",
        _BASELINE,
        min(r["applied_at"] for r in rows),
    )
    log.info("squashed migrations adopted", extra={"migration": _BASELINE, "schema": schema})


async def migrate(conn: asyncpg.Connection, schema: str) -> list[str]:
    """Create ``schema`` and apply every migration not applied yet; return the names applied."""
    applied: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        # The schema name is validated in settings.py (a plain identifier), so quoting suffices.
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(f'SET LOCAL search_path TO "{schema}"')
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        await _adopt_squashed(conn, schema)
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, name, sql in _migrations():
            if version in done:
                continue
            await conn.execute(sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
            )
            applied.append(name)
    for name in applied:
        log.info("migration applied", extra={"migration": name, "schema": schema})
    return applied


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset on release: nothing beyond what asyncpg always does.

    asyncpg's default reset sends ``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL`` on every release, one more round trip per acquire (2026-12-03: 378-467 us
    per acquire, query and release against 267-295 us without it, local PostgreSQL). Pooled
    connections here never hold session state: LISTEN and the session advisory lock use
    connections of their own (store/guard.py, change_feed.py, instance_lock.py), every SET
    is SET LOCAL, cursors live in transactions. An open transaction is still rolled back
    and listeners removed by asyncpg before this runs (``Connection._reset``).
    tests/store/test_store_pool.py holds that a released connection comes back clean.
    """


async def create_pool(dsn: str, settings: DatabaseSettings) -> asyncpg.Pool:
    """Open a pool whose connections see ``settings.schema`` first; migrate it before use."""
    conn = await asyncpg.connect(dsn, timeout=settings.command_timeout_seconds)
    try:
        await migrate(conn, settings.schema)
    finally:
        await conn.close()
    pool = await asyncpg.create_pool(
        dsn,
        min_size=settings.pool_min,
        max_size=settings.pool_max,
        command_timeout=settings.command_timeout_seconds,
        timeout=settings.command_timeout_seconds,
        reset=_keep_session,
        server_settings={
            "search_path": settings.schema,
            # Durable commits are the product: never let a session turn them off.
            "synchronous_commit": "on",
            "application_name": "consent-gateway",
            # Short statements only: compiling one (87 ms for the batch gate's read of
            # 100,000 addresses, 2026-12-03) costs more than it could save.
            "jit": "off",
        },
    )
    assert pool is not None
    return pool


class NoDatabase(ConfigError):
    """A read-only command found no database, schema or ledger to read (it creates none)."""

    code = "no_database"


async def connect_existing(dsn: str, settings: DatabaseSettings) -> asyncpg.Connection:
    """A connection to an existing, migrated schema; ``NoDatabase`` naming what is missing.

    For read-only commands (``audit verify``, ``keys list``): unlike ``create_pool`` this
    never creates a schema or applies a migration, so pointing one at the wrong database
    cannot leave an empty schema behind that then looks like an empty ledger.
    """
    conn = await asyncpg.connect(dsn, timeout=settings.command_timeout_seconds)
    try:
        database = await conn.fetchval("SELECT current_database()")
        found = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_tables"
            " WHERE schemaname = $1 AND tablename = 'ledger')",
            settings.schema,
        )
        if not found:
            raise NoDatabase(
                f"database {database!r} has no consent ledger in schema {settings.schema!r}"
                " (nothing was created; check GATEWAY_DATABASE_URL and database.schema)"
            )
        await conn.execute(f'SET search_path TO "{settings.schema}"')  # validated identifier
    except BaseException:
        await conn.close()
        raise
    return conn


@asynccontextmanager
async def embedded_postgres(data_dir: Path, *, create: bool = True) -> AsyncIterator[str]:
    """Run a private PostgreSQL (pgserver) with its data in ``data_dir``; yield its DSN.

    For the quickstart only: production sets GATEWAY_DATABASE_URL. pgserver listens on a
    unix socket in ``data_dir``, so nothing is exposed on the network. With ``create=False``
    (read-only commands) a directory that holds no cluster is ``NoDatabase``, not a new one.
    """
    import pgserver  # imported here: production never loads the embedded server

    if not create and not (data_dir / "PG_VERSION").is_file():
        raise NoDatabase(
            f"no embedded PostgreSQL cluster in {data_dir} (nothing was created; start"
            " `gateway serve` once, or set GATEWAY_DATABASE_URL)"
        )
    await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
    # Starting the server blocks for up to a second: keep it off the event loop.
    get_server = pgserver.get_server  # type: ignore[attr-defined]
    server = await asyncio.to_thread(get_server, str(data_dir), cleanup_mode="stop")
    try:
        yield str(server.get_uri())
    finally:
        await asyncio.to_thread(server.cleanup)


@asynccontextmanager
async def existing_dsn(settings: Settings) -> AsyncIterator[str]:
    """The database a read-only command reads: ``GATEWAY_DATABASE_URL``, or an embedded
    cluster that must exist already (``create=False``: a read never invents one)."""
    if settings.database_url is not None:
        yield settings.database_url
        return
    settings.require_embedded_allowed()
    async with embedded_postgres(Path(settings.database.embedded_data_dir), create=False) as dsn:
        yield dsn
