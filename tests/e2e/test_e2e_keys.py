"""Keys that do not move (issue 11.6): gateway processes started as a user starts them.

The development key is written once and never again; a start that fails writes nothing; a
key file that cannot be used stops the start. Rotating ``GATEWAY_SECRET_KEY`` with
``GATEWAY_PREVIOUS_SECRET_KEYS`` keeps signatures, links and the suppression list as the
README's "Keys and rotation" says, and dropping a previous secret that erased people still
depend on is refused.
"""

from __future__ import annotations

import asyncio
import json
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from processes import GatewayProcess
from support import PG_URL, REDIS_URL

from gateway.security.signing import HEADER, WEBHOOK_PURPOSE, derive_key, sign
from gateway.store.suppression import key_id

pytestmark = pytest.mark.slow

OLD = "rotation-old-secret-0123456789-0123456789-abcdef"
NEW = "rotation-new-secret-9876543210-9876543210-fedcba"


async def _cli(gw: GatewayProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """One `gateway` command with the process's config and environment."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "gateway", "--config", str(gw.config), *args],
        env=gw.env, cwd=gw.workdir, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


async def _serve_fails(gw: GatewayProcess) -> subprocess.CompletedProcess[str]:
    """`gateway serve` that must exit by itself (a refused start)."""
    return await _cli(gw, "serve")


async def _inbound(gw: GatewayProcess, secret: str, sms_id: str, text: str,
                   number: str = "+14155550123") -> int:  # fmt: skip
    body = json.dumps({"id": sms_id, "from": number, "to": "12345", "text": text}).encode()
    headers = {"Content-Type": "application/json",
               HEADER: sign(derive_key(secret.encode(), WEBHOOK_PURPOSE), body)}  # fmt: skip
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{gw.url}/v1/inbound/sms", data=body, headers=headers) as resp,
    ):
        return resp.status


async def _api(gw: GatewayProcess, key: str, path: str, payload: object) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{gw.url}{path}", json=payload,
                     headers={"Authorization": f"Bearer {key}"}) as resp,
    ):  # fmt: skip
        return resp.status, await resp.json()


async def _get(gw: GatewayProcess, url: str) -> int:
    path = url.split("/p/", 1)[1]
    async with aiohttp.ClientSession() as session, session.get(f"{gw.url}/p/{path}") as resp:
        return resp.status


async def _admin_key(gw: GatewayProcess) -> str:
    done = await _cli(gw, "keys", "create", "--name", "e2e", "--scopes", "admin")
    assert 0 == done.returncode, done.stderr
    key: str = json.loads(done.stdout)["key"]
    return key


def _opt_in(number: str, key: str) -> dict[str, Any]:
    return {"channel": "sms", "sender": "12345", "program": "reminders", "contact": number,
            "action": "opt_in", "method": "api", "idempotency_key": key}  # fmt: skip


async def test_the_development_key_is_written_once_and_never_replaced(
    tmp_path: Path, schema: str, redis_prefix: str
) -> None:
    """No GATEWAY_SECRET_KEY: a start that fails on a bad config value writes no key; the
    first good start writes it (0600); `gateway sign` signs what the running instance
    accepts; a restart keeps it, so an issued link still opens; a damaged key file stops
    the start and is left as it is."""
    gw = GatewayProcess(tmp_path, schema=schema, redis_prefix=redis_prefix,
                        env={"GATEWAY_DATABASE_URL": PG_URL})  # fmt: skip
    gw.env = {k: v for k, v in gw.env.items()
              if k not in ("GATEWAY_SECRET_KEY", "GATEWAY_REDIS_URL")}  # fmt: skip
    key_file = tmp_path / "var" / "secret_key"
    good = gw.config.read_text(encoding="utf-8")
    gw.config.write_text(good + '[api]\npublic_base_url = "ftp://nowhere"\n', encoding="utf-8")
    failed = await _serve_fails(gw)
    assert (2, False) == (failed.returncode, key_file.exists())

    gw.config.write_text(good, encoding="utf-8")
    gw.start()
    try:
        written = key_file.read_bytes()
        assert 0o600 == stat.S_IMODE(key_file.stat().st_mode)
        body = json.dumps({"id": "d1", "from": "+14155550123", "to": "12345", "text": "STOP"})
        signature = (await _cli(gw, "sign", body)).stdout.strip()
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{gw.url}/v1/inbound/sms", data=body,
                         headers={"Content-Type": "application/json",
                                  HEADER: signature}) as resp,
        ):  # fmt: skip
            assert 200 == resp.status
        api_key = await _admin_key(gw)
        _, link = await _api(gw, api_key, "/v1/preferences/links",
                             {"channel": "sms", "contact": "+14155550123"})  # fmt: skip
    finally:
        assert 0 == gw.stop()

    gw.start()
    try:
        assert written == key_file.read_bytes()
        assert 200 == await _get(gw, link["url"])
        assert 200 == await _inbound(gw, written.decode(), "d2", "HELP")
    finally:
        assert 0 == gw.stop()

    key_file.write_bytes(b"too-short")
    refused = await _serve_fails(gw)
    assert 2 == refused.returncode
    assert str(key_file) in refused.stderr
    assert "at least 32" in refused.stderr
    assert b"too-short" == key_file.read_bytes()


async def test_rotating_the_secret_keeps_signatures_links_and_suppression(
    tmp_path: Path, schema: str, redis_prefix: str
) -> None:
    """Rotation as documented. With GATEWAY_SECRET_KEY=new and the old one in
    GATEWAY_PREVIOUS_SECRET_KEYS: both secrets' signatures verify, links made under the old
    one open, the person erased under the old one is still refused, and a new erasure is
    stored under both. Dropping the old secret while an erasure holds only under it is
    refused at start, naming the key id; once nothing depends on it, the old signatures
    and links stop working and the suppression list still holds."""
    env = {"GATEWAY_DATABASE_URL": PG_URL, "GATEWAY_REDIS_URL": REDIS_URL}
    gw = GatewayProcess(tmp_path, schema=schema, redis_prefix=redis_prefix,
                        env={**env, "GATEWAY_SECRET_KEY": OLD})  # fmt: skip
    erased, later = "+14155550123", "+14155550177"
    gw.start()
    try:
        api_key = await _admin_key(gw)
        assert 200 == await _inbound(gw, OLD, "r1", "START", erased)
        status, _ = await _api(gw, api_key, "/v1/privacy/erase",
                               {"channel": "sms", "contact": erased})  # fmt: skip
        assert 200 == status
        _, link = await _api(gw, api_key, "/v1/preferences/links",
                             {"channel": "sms", "contact": later})  # fmt: skip
    finally:
        assert 0 == gw.stop()

    gw.env = {**gw.env, "GATEWAY_SECRET_KEY": NEW, "GATEWAY_PREVIOUS_SECRET_KEYS": OLD}
    gw.start()
    try:
        assert (200, 200) == (await _inbound(gw, OLD, "r2", "HELP", later),
                              await _inbound(gw, NEW, "r3", "HELP", later))  # fmt: skip
        assert 200 == await _get(gw, link["url"])
        status, err = await _api(gw, api_key, "/v1/consent", _opt_in(erased, "c1"))
        assert (422, "suppressed") == (status, err["error"]["code"])
        signed = (await _cli(gw, "sign", "{}")).stdout.strip()
        stamp = signed.split(",")[0].removeprefix("t=")
        assert sign(derive_key(NEW.encode(), WEBHOOK_PURPOSE), b"{}", int(stamp)) == signed
        status, _ = await _api(gw, api_key, "/v1/privacy/erase",
                               {"channel": "sms", "contact": later})  # fmt: skip
        assert 200 == status
    finally:
        assert 0 == gw.stop()

    gw.env = {k: v for k, v in gw.env.items() if k != "GATEWAY_PREVIOUS_SECRET_KEYS"}
    refused = await _serve_fails(gw)
    old_id = key_id(derive_key(OLD.encode(), "suppression"))
    assert 2 == refused.returncode
    assert f"1 under key id {old_id}" in refused.stderr
    assert "GATEWAY_PREVIOUS_SECRET_KEYS" in refused.stderr

    # The person erased under the old secret alone comes back by themselves; then nothing
    # depends on the old secret any more.
    gw.env = {**gw.env, "GATEWAY_PREVIOUS_SECRET_KEYS": OLD}
    gw.start()
    try:
        assert 200 == await _inbound(gw, NEW, "r4", "START", erased)
    finally:
        assert 0 == gw.stop()
    gw.env = {k: v for k, v in gw.env.items() if k != "GATEWAY_PREVIOUS_SECRET_KEYS"}
    gw.start()
    try:
        assert (401, 200) == (await _inbound(gw, OLD, "r5", "HELP", erased),
                              await _inbound(gw, NEW, "r6", "HELP", erased))  # fmt: skip
        assert 403 == await _get(gw, link["url"])
        status, err = await _api(gw, api_key, "/v1/consent", _opt_in(later, "c2"))
        assert (422, "suppressed") == (status, err["error"]["code"])
    finally:
        assert 0 == gw.stop()
