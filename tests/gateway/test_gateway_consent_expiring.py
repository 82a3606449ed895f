"""``gateway consent expiring`` as a user runs it, as a process against the real PostgreSQL:
JSON lines of the consents whose basis lapses within N days, and no schema invented where
there is none (README, "Read-only commands never create a database").

The ``offers`` program records implied consent from an inquiry (six months); the consents
are made through a running gateway and their start moved back by SQL
(tests/expiry_support.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
from expiry_support import OFFERS, move_since, opt_in, write_senders
from support import CONFIG, PG_URL, SECRET, make_settings

from gateway.app import Gateway
from gateway.settings import Settings


@pytest.fixture
def settings(schema: str, redis_prefix: str, tmp_path: Path) -> Settings:
    """The test settings, with the ``offers`` sender beside the shipped ones."""
    return dataclasses.replace(
        make_settings(schema, redis_prefix), senders_dir=write_senders(tmp_path / "senders")
    )


def _config(folder: Path, schema: str) -> Path:
    """A gateway.toml naming the schema, the senders with ``offers`` and the shipped rules."""
    path = folder / "gateway.toml"
    path.write_text(
        f'[gateway]\nsenders_dir = "{write_senders(folder / "senders").as_posix()}"\n'
        f'[database]\nschema = "{schema}"\n'
        f'[rules]\nshipped_dir = "{(CONFIG.parent / "rules").as_posix()}"\n',
        encoding="utf-8",
    )
    return path


def _gateway(config: Path, *args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env |= {"GATEWAY_SECRET_KEY": SECRET, "GATEWAY_DATABASE_URL": PG_URL}
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "--config", str(config), "consent", "expiring", *args],
        cwd=config.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


async def test_the_command_prints_a_json_line_per_consent_lapsing_within_the_days(
    gateway: Gateway, db: asyncpg.Connection, schema: str, tmp_path: Path
) -> None:
    """Started six months less five days ago (moved back by SQL): listed within 10 days with
    its basis, since and expiry; not within 3; one started two months ago within 200 days;
    another sender's list is empty."""
    await opt_in(gateway, "soon@example.org")
    await opt_in(gateway, "later@example.org")
    await move_since(db, "soon@example.org", "now() - interval '6 months' + interval '5 days'")
    await move_since(db, "later@example.org", "now() - interval '2 months'")
    since = await db.fetchval(
        "SELECT s.updated_at FROM consent s JOIN contacts c ON c.id = s.contact_id"
        " WHERE c.address = 'soon@example.org'"
    )
    config = _config(tmp_path / "cli", schema)

    code, out, err = await asyncio.to_thread(_gateway, config, "--days", "10")

    assert 0 == code, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [
        {
            "channel": "email",
            "sender": OFFERS,
            "program": "offers",
            "address": "soon@example.org",
            "basis": "implied_inquiry",
            "since": since.isoformat(),
        }
    ] == [{k: v for k, v in line.items() if k != "expires_at"} for line in lines]
    assert lines[0]["expires_at"] > lines[0]["since"]
    assert "1 consent(s) lapse within 10 days" in err
    assert (0, "") == (await asyncio.to_thread(_gateway, config, "--days", "3"))[:2]
    code, out, _ = await asyncio.to_thread(_gateway, config, "--days", "200", "--sender", OFFERS)
    assert (0, 2) == (code, len(out.splitlines()))
    assert (0, "") == (
        await asyncio.to_thread(_gateway, config, "--days", "200", "--sender", "12345")
    )[:2]


async def test_a_missing_schema_is_named_and_not_created(tmp_path: Path, schema: str) -> None:
    """No ledger in the configured schema: exit 2 naming it, and the schema still absent."""
    config = _config(tmp_path, schema)

    code, out, err = await asyncio.to_thread(_gateway, config, "--days", "30")

    assert (2, "") == (code, out)
    assert f"no consent ledger in schema '{schema}'" in err
    conn = await asyncpg.connect(PG_URL)
    try:
        assert None is await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", schema)
    finally:
        await conn.close()


@pytest.mark.parametrize("days", ["3651", "-1", "x", "٣"])
def test_days_outside_0_to_3650_is_a_usage_error(tmp_path: Path, schema: str, days: str) -> None:
    """argparse refuses ``--days`` before anything connects (exit 2)."""
    code, out, err = _gateway(_config(tmp_path, schema), "--days", days)
    assert (2, "") == (code, out)
    assert "must be a whole number 0..3650" in err
