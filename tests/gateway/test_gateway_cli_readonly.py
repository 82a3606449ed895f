"""Read-only commands never invent a database, and relative paths follow the config file.

`gateway --config /abs/path/gateway.toml audit verify`, run from another directory, used to
start a brand-new embedded cluster under the current directory and print ``"ok": true,
"events": 0``: an empty ledger that looked like a verified one. The commands run here as a
user runs them, as processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
from support import CONFIG, PG_URL, SECRET

from gateway.settings import load_settings


def _config(folder: Path, schema: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "gateway.toml"
    text = f'[gateway]\nsenders_dir = "{(CONFIG.parent / "senders").as_posix()}"\n'
    if schema is not None:
        text += f'[database]\nschema = "{schema}"\n'
    path.write_text(text, encoding="utf-8")
    return path


def _gateway(cwd: Path, config: Path, *args: str, dsn: str | None = None) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY_SECRET_KEY"] = SECRET
    if dsn is not None:
        env["GATEWAY_DATABASE_URL"] = dsn
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "--config", str(config), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


def test_audit_verify_elsewhere_creates_no_cluster_and_says_there_is_none(tmp_path: Path) -> None:
    """No database URL, no cluster at the configured place: exit 2, a message naming the
    directory, and no directory created, neither beside the config nor in the cwd."""
    config = _config(tmp_path / "etc")
    elsewhere = tmp_path / "work"
    elsewhere.mkdir()

    code, out, err = _gateway(elsewhere, config, "audit", "verify")

    assert 2 == code
    assert f"no embedded PostgreSQL cluster in {tmp_path / 'etc' / 'var' / 'pg'}" in err
    assert "" == out
    assert not (tmp_path / "etc" / "var").exists()
    assert [] == list(elsewhere.iterdir())


async def test_audit_verify_on_a_missing_schema_creates_none(tmp_path: Path, schema: str) -> None:
    """A database URL whose schema holds no ledger: exit 2 naming database and schema, and
    the schema still does not exist afterwards."""
    config = _config(tmp_path, schema)

    code, _, err = _gateway(tmp_path, config, "audit", "verify", dsn=PG_URL)

    assert 2 == code
    assert f"database 'test' has no consent ledger in schema '{schema}'" in err
    conn = await asyncpg.connect(PG_URL)
    try:
        assert None is await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", schema)
    finally:
        await conn.close()


def test_an_empty_ledger_is_reported_as_empty_naming_the_database(
    tmp_path: Path, schema: str
) -> None:
    """After `gateway migrate`, verify exits 0 and says the ledger is empty, and where."""
    config = _config(tmp_path, schema)
    assert 0 == _gateway(tmp_path, config, "migrate", dsn=PG_URL)[0]

    code, out, err = _gateway(tmp_path, config, "audit", "verify", dsn=PG_URL)

    report = json.loads(out)
    assert (0, True, True, 0, "test", schema) == (
        code,
        report["ok"],
        report["empty"],
        report["events"],
        report["database"],
        report["schema"],
    )
    assert f"the ledger in database 'test', schema '{schema}', is empty" in err


def test_classify_and_check_config_touch_no_database(tmp_path: Path) -> None:
    """Neither command creates anything, wherever it runs."""
    config = _config(tmp_path / "etc")
    elsewhere = tmp_path / "work"
    elsewhere.mkdir()

    assert 0 == _gateway(elsewhere, config, "classify", "--to", "12345", "STOP")[0]
    assert 0 == _gateway(elsewhere, config, "check-config")[0]
    assert ["gateway.toml"] == [p.name for p in (tmp_path / "etc").iterdir()]
    assert [] == list(elsewhere.iterdir())


def test_relative_paths_resolve_from_the_config_files_folder(tmp_path: Path) -> None:
    """`embedded_data_dir = "data/pg"` means beside the config file, whatever the cwd."""
    path = tmp_path / "gateway.toml"
    path.write_text('[database]\nembedded_data_dir = "data/pg"\n', encoding="utf-8")

    settings = load_settings(path, {"GATEWAY_SECRET_KEY": SECRET})

    assert str(tmp_path / "data" / "pg") == settings.database.embedded_data_dir
