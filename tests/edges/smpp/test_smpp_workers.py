"""``gateway serve --workers N`` (gateway/app/workers.py): N processes, one SMSC account.

Each worker binds on its own and shares the HTTP port; every STOP is committed once and
answered once whichever worker took it; SIGTERM drains them all; a worker that dies ends
the set with a non-zero status; configurations the workers cannot share are refused.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from faults import free_port
from smsc_sim import SYSTEM_ID, Smsc, password_env
from support import CONFIG, PG_URL, REDIS_URL, SECRET

from gateway.app import workers
from gateway.errors import ConfigError
from gateway.settings import Settings

pytestmark = pytest.mark.slow


class Workers:
    """``python -m gateway serve --workers N`` bound to the simulator."""

    def __init__(self, tmp: Path, sim: Smsc, schema: str, prefix: str, count: int) -> None:
        self.port = free_port()
        self.config = tmp / "gateway.toml"
        senders = (CONFIG.parent / "senders").as_posix()
        self.config.write_text(
            f'[gateway]\nsenders_dir = "{senders}"\n[http]\nport = {self.port}\n'
            f'[database]\nschema = "{schema}"\npool_min = 1\npool_max = 4\n'
            f'[cache]\nkey_prefix = "{prefix}"\n[outbox]\npoll_interval_seconds = 0.1\n'
            '[smpp]\nshutdown_timeout_seconds = 2.0\n[smpp.senders]\n"12345" = ["sim"]\n'
            f'[smpp.smsc.sim]\nhost = "127.0.0.1"\nport = {sim.smpp_port}\n'
            f'system_id = "{SYSTEM_ID}"\nreconnect_min_seconds = 0.05\n'
            "reconnect_max_seconds = 0.5\nregistered_delivery = false\n",
            encoding="utf-8",
        )
        env = {**os.environ, "GATEWAY_SECRET_KEY": SECRET, "GATEWAY_DATABASE_URL": PG_URL,
               "GATEWAY_REDIS_URL": REDIS_URL, **password_env()}  # fmt: skip
        self.log = tmp / "gateway.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "--config", str(self.config), "serve",
                 "--workers", str(count)],
                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp,
            )  # fmt: skip

    def healthy(self) -> bool:
        """True once /healthz answers on the shared port."""
        try:
            url = f"http://127.0.0.1:{self.port}/healthz"
            with urllib.request.urlopen(url, timeout=0.5) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def children(self) -> list[int]:
        """The worker processes' pids (from /proc: children of the parent)."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == self.proc.pid:
                    found.append(int(entry.name))
        return found

    def stop(self, sig: int = signal.SIGTERM, within: float = 30.0) -> int:
        """Signal the parent and return its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=within)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@pytest.fixture
async def two(tmp_path: Path, smsc: Smsc, schema: str, redis_prefix: str) -> AsyncIterator[Workers]:
    """Two workers, both bound and serving HTTP."""
    group = Workers(tmp_path, smsc, schema, redis_prefix, 2)
    try:
        await smsc.wait_bound(2, within=30)
        deadline = time.monotonic() + 20
        while not group.healthy():
            assert time.monotonic() < deadline, group.log.read_text()[-2000:]
            await asyncio.sleep(0.1)
        yield group
    finally:
        group.stop(signal.SIGKILL if group.proc.poll() is None else signal.SIGTERM)
        for pid in group.children():
            os.kill(pid, signal.SIGKILL)


async def test_two_workers_bind_and_answer_every_stop_once(
    two: Workers, smsc: Smsc, schema: str
) -> None:
    """Two binds of one account; 200 STOPs, each committed once and confirmed once."""
    assert 2 == len(two.children())
    assert 2 == (await smsc.summary())["binds"]
    result = await smsc.call("POST", "/flood", {
        "count": 200, "dest": "12345", "text": "STOP", "window": 20,
        "source_base": "14165550000", "wait_replies": True, "timeout_ms": 30_000,
    })  # fmt: skip
    assert (200, 200) == (result["acked"], result["replies"])
    summary = await smsc.summary()
    assert (200, 200) == (summary["submits"], summary["distinct_dests"])
    conn = await asyncpg.connect(PG_URL, server_settings={"search_path": schema})
    try:
        assert 200 == await conn.fetchval("SELECT count(*) FROM inbound_events")
    finally:
        await conn.close()
    assert 0 == two.stop()
    assert [] == two.children()


async def test_a_worker_that_dies_ends_the_set_non_zero(two: Workers) -> None:
    """SIGKILL one worker: the parent stops the other and exits with a failure status."""
    victim, other = two.children()
    os.kill(victim, signal.SIGKILL)
    code = two.proc.wait(timeout=30)
    assert code != 0
    with pytest.raises(ProcessLookupError):
        os.kill(other, 0)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"database_url": None}, "GATEWAY_DATABASE_URL"),
        ({"redis_url": None}, "GATEWAY_REDIS_URL"),
        ({"edges": {"smtp": {}}}, "SMTP"),
    ],
)
def test_configurations_workers_cannot_share_are_refused(
    settings: Settings, change: dict[str, object], words: str
) -> None:
    """An embedded database, a cache in the process or inbound SMTP: one worker only."""
    shared = dataclasses.replace(settings, database_url=PG_URL, redis_url=REDIS_URL)
    workers.check_workers(shared, 2)
    with pytest.raises(ConfigError, match=words):
        workers.check_workers(dataclasses.replace(shared, **change), 2)  # type: ignore[arg-type]
    workers.check_workers(dataclasses.replace(shared, **change), 1)  # type: ignore[arg-type]


def test_event_loop_choice() -> None:
    """auto takes uvloop (it is in the lock); asyncio is the standard loop; others refused."""
    assert "uvloop" == workers.loop_factory("auto")[0]
    name, factory = workers.loop_factory("asyncio")
    assert ("asyncio", asyncio.new_event_loop) == (name, factory)
    with pytest.raises(ConfigError):
        workers.loop_factory("trio")
