"""SMPP benchmark: 50,000 MOs through the node-smpp SMSC simulator, the gateway next to Kannel.

For each system, from the same simulator build, on the same machine, in the same run:

* MOs per second from the first deliver_sm to the last confirmation's submit_sm (each text
  committed durably, acknowledged, confirmed), and the deliver_sm_resp rate alone;
* p50 / p99 latency from a text's deliver_sm to its confirmation's submit_sm.

The gateway runs as a process (``python -m gateway serve``) on the real PostgreSQL and Redis,
with durable commits. Kannel 1.4.5 (Debian ``kannel``) runs bearerbox + smsbox with its file
store and an sms-service answering ``stop`` with a fixed text: it records nothing, which is
the ceiling we compare with. Kannel must be installed (``apt-get install kannel``); without
it only the gateway's row is printed.

The first row is the load generator's own ceiling: the same flood answered by
tests/peers/smsc/echo_esme.js, an ESME that acknowledges and submits a fixed reply with no
database. Every other row is printed as a fraction of it: a system near 1.00 is held back by
the simulator (or by sharing the machine's cores with it), not measured.
Run: ``make bench BENCH=smpp`` or ``python -m bench.run_smpp``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench.cleanup import drop_redis_prefix

ROOT = Path(__file__).resolve().parent.parent
SIMULATOR = ROOT / "tests" / "peers" / "smsc" / "simulator.js"
ECHO_ESME = ROOT / "tests" / "peers" / "smsc" / "echo_esme.js"
PG_URL = os.environ.get("GATEWAY_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("GATEWAY_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
SECRET = "bench-secret-key-0123456789-0123456789-0123456789"  # noqa: S105 - bench only
PASSWORD = "bench"  # noqa: S105 - the simulator's bench account
MOS = int(os.environ.get("BENCH_SMPP_MOS", "50000"))
# `gateway serve --workers N` for each N (gateway/app/workers.py); "1 2" on two cores.
WORKERS = [int(n) for n in os.environ.get("BENCH_SMPP_WORKERS", "1 2").split()]
WINDOW = int(os.environ.get("BENCH_SMPP_WINDOW", "200"))
STOP_REPLY = (
    "Acme Health: You're unsubscribed and will get no more msgs. Reply START to rejoin,"
    " HELP for help."
)


class Simulator:
    """The node-smpp SMSC simulator and its control API."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self.smpp_port = self.control_port = 0
        self.http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Simulator:
        node = shutil.which("node") or "/usr/bin/node"
        self.proc = await asyncio.create_subprocess_exec(
            node, str(SIMULATOR), "--system-id", "gateway", "--password", PASSWORD,
            "--retry-ms", "200", stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert self.proc.stdout is not None
        ports = json.loads(await self.proc.stdout.readline())
        self.smpp_port, self.control_port = ports["smpp_port"], ports["control_port"]
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=900))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.http is not None:
            await self.http.close()
        if self.proc is not None:
            self.proc.terminate()
            await self.proc.wait()

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        assert self.http is not None
        url = f"http://127.0.0.1:{self.control_port}{path}"
        async with self.http.request(method, url, json=body or {}) as resp:
            return await resp.json()

    async def wait_bound(self, within: float = 30.0, receivers: int = 1) -> None:
        deadline = time.monotonic() + within
        while (await self.call("GET", "/summary"))["receivers"] < receivers:
            if time.monotonic() > deadline:
                raise RuntimeError("nothing bound to the simulator")
            await asyncio.sleep(0.1)

    async def flood(self, count: int = MOS) -> dict[str, Any]:
        """500 STOPs to warm up, then ``count`` STOPs from distinct numbers (+1416555...)."""
        await self.call("POST", "/mode", {"dlr": False})
        await self.call("POST", "/flood", {"count": 500, "dest": "12345", "text": "STOP",
                                           "window": WINDOW, "source_base": "14155550000",
                                           "wait_replies": True, "timeout_ms": 60_000})  # fmt: skip
        await self.call("POST", "/reset")
        result: dict[str, Any] = await self.call("POST", "/flood", {
            "count": count, "dest": "12345", "text": "STOP", "window": WINDOW,
            "source_base": "14165550000", "wait_replies": True, "timeout_ms": 600_000,
        })  # fmt: skip
        return result


def _gateway_config(work: Path, schema: str, sim: Simulator) -> Path:
    config = work / "gateway.toml"
    senders = (ROOT / "config" / "senders").as_posix()
    config.write_text(
        f'[gateway]\nsenders_dir = "{senders}"\n[http]\nport = 0\n'
        f'[database]\nschema = "{schema}"\npool_min = 4\npool_max = 12\n'
        f'[cache]\nkey_prefix = "b{schema[-8:]}"\n[logging]\nlevel = "INFO"\n'
        "[outbox]\nbatch_size = 500\n"
        '[smpp]\n[smpp.senders]\n"12345" = ["sim"]\n'
        f'[smpp.smsc.sim]\nhost = "127.0.0.1"\nport = {sim.smpp_port}\nsystem_id = "gateway"\n'
        f"window = {WINDOW}\nsubmit_rate = 100000.0\nregistered_delivery = false\n",
        encoding="utf-8",
    )
    return config


async def run_gateway(
    workers: int = 1, *, schema: str | None = None, mos: int = MOS
) -> dict[str, Any]:
    """``gateway serve --workers N`` through one flood of ``mos`` STOPs.

    Without ``schema`` it runs on a new schema and drops it; with one (migrated and seeded
    by the caller, bench/run_scale.py) it serves that schema and leaves it to the caller,
    and ``committed`` counts the seeded inbound events too.
    """
    own = schema is None
    schema = schema or f"bench_smpp_{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="bench-smpp-") as tmp:
        async with Simulator() as sim:
            env = {**os.environ, "GATEWAY_DATABASE_URL": PG_URL, "GATEWAY_REDIS_URL": REDIS_URL,
                   "GATEWAY_SECRET_KEY": SECRET, "GATEWAY_SMPP_SIM_PASSWORD": PASSWORD}  # fmt: skip
            config = _gateway_config(Path(tmp), schema, sim)
            with (Path(tmp) / "gateway.log").open("wb") as log:
                proc = subprocess.Popen(  # noqa: ASYNC220 - start only; waits are polled
                    [sys.executable, *os.environ.get("BENCH_PY_ARGS", "").split(), "-m", "gateway",
                     "--config", str(config), "serve", "--workers", str(workers)],
                    env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp,
                )  # fmt: skip
                try:
                    await sim.wait_bound(receivers=workers)
                    with _profiled(proc.pid if workers == 1 else None):
                        result = await sim.flood(mos)
                finally:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=60)
        conn = await asyncpg.connect(PG_URL)
        try:
            result["committed"] = await conn.fetchval(
                f'SELECT count(*) FROM "{schema}".inbound_events'  # noqa: S608 - bench schema
            )
            if own:
                await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        finally:
            await conn.close()
        await drop_redis_prefix(REDIS_URL, f"b{schema[-8:]}")
    return result


@contextlib.contextmanager
def _profiled(pid: int | None) -> Iterator[None]:
    """With BENCH_PYSPY=<file>, sample the gateway with py-spy (collapsed stacks) meanwhile
    (one worker only: the parent of several does no work).

    py-spy is not a dependency: ``.venv/bin/pip install py-spy`` first. ``--nonblocking``
    reads the process without stopping it, so the figures move little.
    """
    out = os.environ.get("BENCH_PYSPY")
    spy = shutil.which("py-spy", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    if not out or not spy or pid is None:
        yield
        return
    recorder = subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--rate", "100", "--format", "raw", "--nonblocking",
         "--output", out],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)
        recorder.wait(timeout=60)


def _kannel_config(work: Path, sim: Simulator) -> Path:
    config = work / "kannel.conf"
    config.write_text(
        f"""group = core
admin-port = 13900
admin-password = bench
smsbox-port = 13901
log-file = "{work}/bearerbox.log"
log-level = 3
box-allow-ip = "127.0.0.1"
store-type = file
store-location = "{work}/kannel.store"

group = smsc
smsc = smpp
smsc-id = sim
host = 127.0.0.1
port = {sim.smpp_port}
transceiver-mode = true
smsc-username = gateway
smsc-password = {PASSWORD}
system-type = ""
max-pending-submits = {WINDOW}
enquire-link-interval = 30

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = 13901
log-file = "{work}/smsbox.log"
log-level = 3

group = sms-service
keyword = stop
text = "{STOP_REPLY}"
max-messages = 1

group = sms-service
keyword = default
text = "Acme Health: reply HELP for help, STOP to cancel."
max-messages = 1
""",
        encoding="utf-8",
    )
    return config


async def run_ceiling() -> dict[str, Any]:
    """The load generator's own ceiling: the simulator flooding an ESME that only answers
    (tests/peers/smsc/echo_esme.js: no database, no queue, one fixed reply per text)."""
    async with Simulator() as sim:
        node = shutil.which("node") or "/usr/bin/node"
        esme = subprocess.Popen(  # noqa: ASYNC220 - start only; it ends with the simulator
            [node, str(ECHO_ESME), "--port", str(sim.smpp_port), "--system-id", "gateway",
             "--password", PASSWORD, "--window", str(WINDOW), "--text", STOP_REPLY],
        )  # fmt: skip
        try:
            await sim.wait_bound()
            return await sim.flood()
        finally:
            esme.terminate()
            esme.wait(timeout=20)


async def run_kannel() -> dict[str, Any] | None:
    bearerbox, smsbox = (
        shutil.which("bearerbox", path="/usr/sbin:/usr/bin"),
        shutil.which("smsbox", path="/usr/sbin:/usr/bin"),
    )
    if not bearerbox or not smsbox:
        print("kannel is not installed (apt-get install kannel): no peer figure")
        return None
    with tempfile.TemporaryDirectory(prefix="bench-kannel-") as tmp:
        async with Simulator() as sim:
            config = _kannel_config(Path(tmp), sim)
            null = subprocess.DEVNULL
            boxes = [subprocess.Popen([bearerbox, str(config)], stdout=null, stderr=null)]  # noqa: ASYNC220
            await _port_open(13901)  # smsbox must find bearerbox's box port open
            boxes.append(subprocess.Popen([smsbox, str(config)], stdout=null, stderr=null))  # noqa: ASYNC220
            try:
                await sim.wait_bound()
                return await sim.flood()
            finally:
                for box in reversed(boxes):
                    box.send_signal(signal.SIGTERM)
                    try:
                        box.wait(timeout=20)
                    except subprocess.TimeoutExpired:
                        box.kill()
                        box.wait()


async def _port_open(port: int, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
        else:
            writer.close()
            return


def _rates(result: dict[str, Any]) -> tuple[float, float]:
    reply = result["replies"] / result["reply_seconds"] if result["reply_seconds"] else 0.0
    return reply, result["acked"] / result["ack_seconds"]


async def _main() -> None:
    ceiling = await run_ceiling()
    gateways = [(n, await run_gateway(n)) for n in WORKERS]
    peer = await run_kannel()
    rows = [("ceiling (echo ESME)", ceiling)]
    rows += [(f"gateway, {n} worker{'s' if n > 1 else ''}", r) for n, r in gateways]
    rows += [("kannel 1.4.5", peer)] if peer else []
    top = _rates(ceiling)[0]
    print(f"{time.strftime('%Y-%m-%d %H:%M')}: {MOS} MOs (STOP from distinct numbers), window"
          f" {WINDOW}, simulator: node-smpp, {os.cpu_count()} cores")  # fmt: skip
    print(f"{'':20} {'replies/s':>10} {'/ceiling':>8} {'acks/s':>10} {'p50 ms':>8} {'p99 ms':>8}"
          f" {'replies':>8}")  # fmt: skip
    for name, r in rows:
        reply_rate, ack_rate = _rates(r)
        print(f"{name:20} {reply_rate:10.0f} {reply_rate / top:8.2f} {ack_rate:10.0f}"
              f" {r['p50_ms']:8.1f} {r['p99_ms']:8.1f} {r['replies']:8d}")  # fmt: skip
    loop = os.environ.get("GATEWAY_EVENT_LOOP", "auto")
    for n, r in gateways:
        print(f"gateway ({n} worker(s), loop {loop}) committed {r.get('committed')} inbound events")
        if peer:
            print(f"ratio gateway ({n})/kannel replies/s: {_rates(r)[0] / _rates(peer)[0]:.2f}")


def main() -> None:
    """Run both and print the table."""
    asyncio.run(_main())


if __name__ == "__main__":
    main()
