"""Operator endpoints and commands on a running gateway: /metrics, /readyz and their OpenAPI
description, and `gateway keys` (last use, duplicate names)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support import CONFIG, PG_URL, SECRET

from gateway.app import Gateway
from gateway.settings import Settings


async def _get(gw: Gateway, path: str, **headers: str) -> tuple[int, str, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{gw.http_port}{path}", headers=headers) as resp,
    ):
        return resp.status, resp.content_type, await resp.text()


async def test_metrics_carry_no_created_series(gateway: Gateway) -> None:
    """After traffic, /metrics holds the counters and histograms but no `*_created` line."""
    await _get(gateway, "/readyz")
    status, _, text = await _get(gateway, "/metrics")

    assert 200 == status
    assert "gateway_commit_batch_size_bucket" in text
    assert [] == [line for line in text.splitlines() if "_created" in line]


async def test_readyz_and_metrics_are_described_and_answer_as_described(
    gateway: Gateway,
) -> None:
    """/openapi.json documents /readyz (its `scope`, its 200 and 503 body) and /metrics; the
    live answers of both scopes use only documented fields and values."""
    _, _, raw = await _get(gateway, "/openapi.json")
    document = json.loads(raw)
    readyz = document["paths"]["/readyz"]["get"]
    schema = document["components"]["schemas"]["Readiness"]
    assert [["intake"]] == [p["schema"]["enum"] for p in readyz["parameters"]]
    assert {"#/components/schemas/Readiness"} == {
        readyz["responses"][code]["content"]["application/json"]["schema"]["$ref"]
        for code in ("200", "503")
    }
    assert "text/plain" in document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]

    for path in ("/readyz", "/readyz?scope=intake"):
        status, media, text = await _get(gateway, path)
        body: dict[str, Any] = json.loads(text)
        assert (200, "application/json") == (status, media)
        assert set(body) <= set(schema["properties"])
        assert set(schema["required"]) <= set(body)
        for name in ("status", "database", "writer", "cache"):
            assert body[name] in schema["properties"][name]["enum"]


@pytest.mark.parametrize("scope", ["full", "INTAKE", "intake ", "ｉｎｔａｋｅ"])
async def test_readyz_refuses_a_scope_it_does_not_know(gateway: Gateway, scope: str) -> None:
    """A scope other than `intake` is 400 in the one error shape, not a full check."""
    status, _, text = await _get(gateway, f"/readyz?scope={scope}")

    assert (400, "bad_request") == (status, json.loads(text)["error"]["code"])


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GATEWAY_SECRET_KEY": SECRET, "GATEWAY_DATABASE_URL": PG_URL}
    return subprocess.run(
        [sys.executable, "-m", "gateway", "--config", str(config), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.fixture
def config(settings: Settings, tmp_path: Path) -> Path:
    """The example configuration pointed at the test's schema."""
    path = tmp_path / "gw.toml"
    path.write_text(
        CONFIG.read_text().replace('schema = "consent"', f'schema = "{settings.database.schema}"')
    )
    (tmp_path / "senders").symlink_to(CONFIG.parent / "senders")
    return path


async def test_keys_list_shows_when_each_key_was_last_used(gateway: Gateway, config: Path) -> None:
    """A key used against the running gateway is listed with its last use; an unused one with
    none. A second lookup of the key within the minute writes nothing."""
    used = json.loads(_cli(config, "keys", "create", "--name", "used", "--scopes", "read").stdout)
    idle = json.loads(_cli(config, "keys", "create", "--name", "idle", "--scopes", "read").stdout)
    check = {"sender": "12345", "program": "reminders", "channel": "sms", "to": "+14155550123"}

    async def last_use() -> Any:
        async with gateway.pool.acquire() as conn:
            query = "SELECT last_used_at FROM api_keys WHERE id = $1"
            return await conn.fetchval(query, used["id"])

    stamps = []
    async with aiohttp.ClientSession() as http:
        for _ in range(2):
            gateway.api.store.forget_keys()  # the next request looks the key up again
            async with http.post(
                f"http://127.0.0.1:{gateway.http_port}/v1/gate/check",
                json=check,
                headers={"Authorization": f"Bearer {used['key']}"},
            ) as resp:
                assert 200 == resp.status
            stamps.append(await last_use())

    listed = await asyncio.to_thread(_cli, config, "keys", "list")
    shown = {k["id"]: k["last_used_at"] for k in json.loads(listed.stdout)}
    assert stamps[0] is not None
    assert stamps[0] == stamps[1]  # not a write per lookup: once a minute at most
    assert (stamps[0].isoformat(), None) == (shown[used["id"]], shown[idle["id"]])


async def test_keys_create_warns_when_a_live_key_has_the_name(config: Path) -> None:
    """A second live key named alike is created, with a warning on stderr naming the other;
    stdout stays one JSON object. After a revocation the name is free again."""
    first = _cli(config, "keys", "create", "--name", "campaigns", "--scopes", "read")
    second = _cli(config, "keys", "create", "--name", "campaigns", "--scopes", "send")
    first_id = json.loads(first.stdout)["id"]

    assert (False, 0) == ("warning" in first.stderr, first.returncode)
    assert (0, ["send"]) == (second.returncode, json.loads(second.stdout)["scopes"])
    assert "warning" in second.stderr
    assert first_id in second.stderr
    assert "'campaigns'" in second.stderr

    _cli(config, "keys", "revoke", first_id)
    _cli(config, "keys", "revoke", json.loads(second.stdout)["id"])
    third = _cli(config, "keys", "create", "--name", "campaigns", "--scopes", "read")
    assert (False, 0) == ("warning" in third.stderr, third.returncode)
