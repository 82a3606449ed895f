"""The gateway as processes: two instances sharing state, SIGTERM draining, the embedded default."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from processes import GatewayProcess
from support import PG_URL, REDIS_URL, ROOT, SECRET

from gateway.security.signing import HEADER, WEBHOOK_PURPOSE, derive_key, sign

KEY = derive_key(SECRET.encode(), WEBHOOK_PURPOSE)
SCOPE = {"sender": "12345", "program": "reminders", "channel": "sms"}

pytestmark = pytest.mark.slow


async def _post(session: aiohttp.ClientSession, url: str, payload: object) -> tuple[int, dict]:  # type: ignore[type-arg]
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", HEADER: sign(KEY, body)}
    async with session.post(url, data=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def _gate(
    session: aiohttp.ClientSession, url: str, payload: object, api_key: str
) -> dict[str, object]:
    headers = {"Authorization": f"Bearer {api_key}"}
    async with session.post(url, json=payload, headers=headers) as resp:
        assert 200 == resp.status, await resp.text()
        answer: dict[str, object] = await resp.json()
        return answer


def _env() -> dict[str, str]:
    return {"GATEWAY_DATABASE_URL": PG_URL, "GATEWAY_REDIS_URL": REDIS_URL}


async def test_opt_out_on_one_instance_is_refused_by_the_other_at_once(
    tmp_path: Path, schema: str, redis_prefix: str
) -> None:
    """Two gateway processes on one Postgres and Redis: B refuses as soon as A acknowledges."""
    a = GatewayProcess(tmp_path, schema=schema, redis_prefix=redis_prefix, env=_env(), name="a")
    b = GatewayProcess(tmp_path, schema=schema, redis_prefix=redis_prefix, env=_env(), name="b")
    try:
        a.start()
        b.start()
        created = subprocess.run(  # noqa: ASYNC221 - a one-shot CLI call before any traffic
            [sys.executable, "-m", "gateway", "--config", str(a.config), "keys", "create",
             "--name", "e2e", "--scopes", "read"],
            env=a.env, capture_output=True, check=True, timeout=30,
        )  # fmt: skip
        api_key = json.loads(created.stdout)["key"]
        async with aiohttp.ClientSession() as session:
            mo = {"from": "+14155550123", "to": "12345"}
            await _post(session, f"{a.url}/v1/inbound/sms", {**mo, "id": "1", "text": "START"})
            check = {**SCOPE, "to": "+14155550123"}
            before = await _gate(session, f"{b.url}/v1/gate/check", check, api_key)
            assert before["allowed"]  # and B's caches now hold 'opted_in'

            status, _ = await _post(
                session, f"{a.url}/v1/inbound/sms", {**mo, "id": "2", "text": "STOP"}
            )
            assert 200 == status
            after = await _gate(session, f"{b.url}/v1/gate/check", check, api_key)
            assert (False, "opted_out") == (after["allowed"], after["reason"])
    finally:
        codes = (a.stop(), b.stop())  # both stopped before either is checked
    assert (0, 0) == codes


async def test_sigterm_drains_in_flight_work(
    tmp_path: Path, schema: str, redis_prefix: str
) -> None:
    """Every request answered 200 before or during shutdown is committed; exit status 0."""
    gw = GatewayProcess(tmp_path, schema=schema, redis_prefix=redis_prefix, env=_env())
    gw.start()
    answered: list[str] = []
    first_answer = asyncio.Event()

    async def one(session: aiohttp.ClientSession, i: int) -> None:
        payload = {"id": f"m{i}", "from": f"+1415555{i:04d}", "to": "12345", "text": "STOP"}
        try:
            status, _ = await _post(session, f"{gw.url}/v1/inbound/sms", payload)
        except aiohttp.ClientError:
            return  # refused or cut during shutdown: the sender retries; nothing acked
        if status == 200:
            answered.append(f"http:m{i}")
            first_answer.set()

    try:
        async with aiohttp.ClientSession() as session:
            tasks = [asyncio.create_task(one(session, i)) for i in range(300)]
            await asyncio.wait_for(first_answer.wait(), 10)
            assert gw.proc is not None
            gw.proc.send_signal(signal.SIGTERM)
            await asyncio.gather(*tasks)
        assert 0 == gw.wait()
    finally:
        gw.stop(signal.SIGKILL)  # a failed assertion must not leave the process running

    conn = await asyncpg.connect(PG_URL, server_settings={"search_path": schema})
    try:
        keys = {r["dedupe_key"] for r in await conn.fetch("SELECT dedupe_key FROM inbound_events")}
    finally:
        await conn.close()
    assert answered
    assert set(answered) <= keys


def _readme_curl_example() -> str:
    """The shell block of the README's "Send it a STOP" section."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Send it a STOP", 1)[1]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A work directory the embedded server's own user can enter (pgserver drops root)."""
    path = Path(tempfile.mkdtemp(prefix="gw-embedded-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def test_embedded_default_serves_within_ten_seconds(open_tmp: Path) -> None:
    """No database URL, no Redis: `gateway serve` starts its own PostgreSQL and answers,
    and the README's curl example, run as written, records a STOP and queues one reply."""
    tmp_path = open_tmp
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    (tmp_path / "config").symlink_to(ROOT / "config")
    gw = GatewayProcess(tmp_path, schema="consent", redis_prefix="cg", env={})
    gw.env = {k: v for k, v in gw.env.items() if not k.startswith("GATEWAY_")}
    started = time.monotonic()
    gw.start(within=10.0)
    try:
        assert time.monotonic() - started < 10.0
        key = derive_key((tmp_path / "var" / "secret_key").read_bytes(), WEBHOOK_PURPOSE)
        body = json.dumps({"id": "q1", "from": "+14155550199", "to": "12345", "text": "STOP"})
        headers = {"Content-Type": "application/json", HEADER: sign(key, body.encode())}
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{gw.url}/v1/inbound/sms", data=body, headers=headers) as resp,
        ):
            reply = await resp.json()
        assert (200, "committed", 1) == (resp.status, reply["status"], len(reply["outbox_ids"]))

        script = _readme_curl_example().replace("127.0.0.1:8080", f"127.0.0.1:{gw.port}")
        done = subprocess.run(  # noqa: ASYNC221 - the gateway runs in another process
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=tmp_path,
            env=gw.env,
            capture_output=True,
            check=True,
            timeout=30,
        )
        answer = json.loads(done.stdout)
        assert ("committed", "opt_out_all", 2, 1) == (
            answer["status"],
            answer["intent"],
            len(answer["ledger_seqs"]),
            len(answer["outbox_ids"]),
        )
    finally:
        assert 0 == gw.stop()
