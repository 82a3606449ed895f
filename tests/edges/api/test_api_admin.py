"""Operator access: sender changes through the admin API reach every instance without a
restart, are validated like check-config and audited; keys come from the CLI."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import asyncpg
from api_helpers import call, new_key
from support import CONFIG, PG_URL, SECRET, eventually, sms

from gateway.app import Gateway
from gateway.settings import Settings


def _definition() -> dict[str, Any]:
    raw = tomllib.loads((CONFIG.parent / "senders" / "12345.toml").read_text())
    return copy.deepcopy(raw)


async def test_program_added_on_one_instance_serves_on_another_without_restart(
    gateway: Gateway, settings: Settings, db: asyncpg.Connection
) -> None:
    """A new program and keyword PUT on instance A: instance B classifies the keyword and
    its gate knows the program within seconds (NOTIFY); the audit log has the change."""
    key = await new_key(gateway, "admin")
    definition = _definition()
    definition["programs"]["deals"] = {
        **definition["programs"]["reminders"],
        "title": "Acme Deals",
        "default": False,
        "keywords": ["DEALS"],
    }
    async with Gateway(settings) as other:
        assert "deals" not in [p.name for p in other.catalogs["12345"].programs]
        status, answer = await call(
            gateway, "PUT", "/v1/admin/senders/12345", key=key, json=definition
        )
        assert (200, 1) == (status, answer["revision"])
        await eventually(
            lambda: other.catalogs["12345"].has_program("deals"),
            message="the change did not reach the other instance",
        )
        outcome = await other.pipeline.handle(sms("DEALS", contact="+14155550188"))
        intent = outcome.intent
        assert intent is not None
        assert ("join", "deals") == (intent.kind.value, intent.program)
    record = await db.fetchrow("SELECT actor, action, target FROM admin_audit ORDER BY id DESC")
    assert record is not None
    assert ("sender.update", "12345") == (record["action"], record["target"])


async def test_invalid_definition_is_refused_and_changes_nothing(
    gateway: Gateway, db: asyncpg.Connection
) -> None:
    """A keyword that starts with an opt-out word, or an opt-out reply that does not say
    messages stop, fails validation: 422 invalid_sender, nothing stored or served."""
    key = await new_key(gateway, "admin")
    bad_keyword = _definition()
    bad_keyword["programs"]["flu"]["keywords"] = ["STOPFLU2"]
    bad_template = _definition()
    bad_template["templates"]["en"]["opt_out"] = "{program}: ok"
    for definition in (bad_keyword, bad_template):
        status, answer = await call(
            gateway, "PUT", "/v1/admin/senders/12345", key=key, json=definition
        )
        assert (422, "invalid_sender") == (status, answer["error"]["code"])
    assert 0 == await db.fetchval("SELECT count(*) FROM sender_overrides")
    write = await new_key(gateway, "write")
    status, _ = await call(gateway, "PUT", "/v1/admin/senders/12345", key=write, json={})
    assert 403 == status


def test_cli_creates_lists_and_revokes_keys(settings: Settings, tmp_path: Path) -> None:
    """`gateway keys create` prints the key once, `list` never shows it, `revoke` ends it."""
    config = tmp_path / "gw.toml"
    config.write_text(
        CONFIG.read_text().replace('schema = "consent"', f'schema = "{settings.database.schema}"')
    )
    (tmp_path / "senders").symlink_to(CONFIG.parent / "senders")
    env = {**os.environ, "GATEWAY_SECRET_KEY": SECRET, "GATEWAY_DATABASE_URL": PG_URL}

    def gateway_cli(*args: str) -> tuple[int, str]:
        done = subprocess.run(
            [sys.executable, "-m", "gateway", "--config", str(config), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        return done.returncode, done.stdout

    code, out = gateway_cli("keys", "create", "--name", "campaigns", "--scopes", "read,send")
    created = json.loads(out)
    assert (0, ["read", "send"]) == (code, created["scopes"])
    code, out = gateway_cli("keys", "list")
    assert (0, False, True) == (code, created["key"] in out, created["id"] in out)
    code, out = gateway_cli("keys", "revoke", created["id"])
    assert (0, {"revoked": created["id"]}) == (code, json.loads(out))
    assert 1 == gateway_cli("keys", "revoke", created["id"])[0]
    assert 2 == gateway_cli("keys", "create", "--name", "x", "--scopes", "root")[0]
