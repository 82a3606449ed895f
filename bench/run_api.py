"""HTTP API benchmarks: the batch gate and single gate checks, over real HTTP with API keys.

The gateway runs as its own process (``gateway serve``), as in production; this process is
the client. Each figure is printed next to a ceiling measured in the same run:

* batch gate: recipients/s through ``POST /v1/gate/batch`` (100,000 per request, half of
  them opted in, answers streamed back, the send rules on and asked about a fixed daytime
  ``at`` so the figure does not depend on the hour) vs a bare aiohttp server on the same
  machine that parses the same body and streams back an answer per recipient without any lookup;
* single check: p50/p99 latency of ``POST /v1/gate/check`` from 500 concurrent keep-alive
  clients in two client processes (each client sends a check, then waits 500 ms: about
  1,000 checks/s in all) vs the same load against a bare aiohttp handler that returns a
  constant answer. Printed with it: where the single checks' answers came from (cache or
  PostgreSQL, and how many of each were refusals) and the gateway's cache failures during
  them, read from its metrics before and after, since a lost cache costs one PostgreSQL
  read per unknown number and the latency alone does not say why; and the gateway process's
  CPU time per check (``/proc``), steadier than the latency on a shared machine.

Both servers (the gateway and the bare one) run in processes of their own, like the
clients, so the three share the machine's cores the same way in both measurements.

Run: ``make bench BENCH=api`` or ``python -m bench.run_api``. Uses GATEWAY_BENCH_DATABASE_URL
and GATEWAY_BENCH_REDIS_URL (default: the local servers).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import asyncpg
import orjson
import redis.asyncio as aioredis
from aiohttp import web

PG_URL = os.environ.get("GATEWAY_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("GATEWAY_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-key-0123456789-0123456789-0123456789"  # noqa: S105 - bench only

RECIPIENTS = 100_000
BATCH_ROUNDS = 5
CLIENTS = 500
CLIENT_PROCESSES = 2
THINK_SECONDS = 0.5
CHECK_SECONDS = 8.0
SCOPE = {"sender": "12345", "program": "reminders", "channel": "sms"}
# A Wednesday, 10:00 in San Francisco (the numbers' +1415): inside every shipped window.
DAYTIME = "2026-12-02T18:00:00+00:00"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _numbers() -> list[str]:
    return [f"+1415{n:07d}" for n in range(RECIPIENTS)]


async def _seed(schema: str, numbers: list[str]) -> None:
    """Half the numbers opted in, straight into the tables (the gate only reads them)."""
    conn = await asyncpg.connect(PG_URL, server_settings={"search_path": schema})
    try:
        await conn.execute(
            "INSERT INTO contacts (channel, address) SELECT 'sms', a FROM unnest($1::text[]) a",
            numbers[::2],
        )
        await conn.execute(
            "INSERT INTO consent (contact_id, sender, program, channel, state, version,"
            " updated_at, last_seq) SELECT id, '12345', 'reminders', 'sms', 'opted_in', 1,"
            " now(), 0 FROM contacts"
        )
    finally:
        await conn.close()


class Server:
    """``gateway serve`` in a child process with a private schema and Redis prefix."""

    def __init__(self, workdir: Path) -> None:
        self.schema = f"bench_{uuid.uuid4().hex[:10]}"
        self.port = _free_port()
        self.config = workdir / "gateway.toml"
        self.config.write_text(
            f'[gateway]\nsenders_dir = "{(ROOT / "config" / "senders").as_posix()}"\n'
            f"[http]\nport = {self.port}\nmax_body_bytes = 65536\n"
            f'[database]\nschema = "{self.schema}"\npool_min = 2\npool_max = 10\n'
            f'[cache]\nkey_prefix = "{self.schema}"\n[logging]\nlevel = "WARNING"\n',
            encoding="utf-8",
        )
        self.env = {
            **os.environ,
            "GATEWAY_SECRET_KEY": SECRET,
            "GATEWAY_DATABASE_URL": PG_URL,
            "GATEWAY_REDIS_URL": REDIS_URL,
        }
        self.proc: asyncio.subprocess.Process | None = None

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "gateway", "--config", str(self.config), *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        return done.stdout

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway",
            "--config",
            str(self.config),
            "serve",
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                try:
                    async with session.get(f"http://127.0.0.1:{self.port}/healthz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)  # start-up poll with a deadline
        raise RuntimeError("gateway did not start")

    def cpu_seconds(self) -> float:
        """User and system CPU time of the gateway process so far; -1 where /proc is not."""
        if self.proc is None:
            return -1.0
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return -1.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            await asyncio.wait_for(self.proc.wait(), 30)
        conn = await asyncpg.connect(PG_URL)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        finally:
            await conn.close()
        # The run's cache entries (a day's TTL): left behind they slow every SCAN on Redis.
        client = aioredis.Redis.from_url(REDIS_URL)
        try:
            keys = [k async for k in client.scan_iter(f"{self.schema}:*", count=10_000)]
            for start in range(0, len(keys), 10_000):
                await client.unlink(*keys[start : start + 10_000])
        finally:
            await client.aclose()


async def _bare_server(port: int) -> None:
    """The ceiling: the same web framework, body parsing and streaming, no lookups."""
    # The gateway's answer shape (gateway/edges/http/gate_api.py answer_json), so both sides
    # stream as many bytes per recipient and the client parses as much.
    answer = {"allowed": False, "verdict": "refused", "reason": "no_consent", "since": None}

    async def batch(request: web.Request) -> web.StreamResponse:
        data = orjson.loads(await request.read())
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        await response.write(b'{"results":' + orjson.dumps([answer] * len(data["to"])) + b"}")
        await response.write_eof()
        return response

    async def check(request: web.Request) -> web.Response:
        orjson.loads(await request.read())
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/v1/gate/batch", batch)
    app.router.add_post("/v1/gate/check", check)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()  # until the parent terminates this process


async def _batch(port: int, key: str, body: bytes) -> float:
    """Recipients/s over ``BATCH_ROUNDS`` requests, after one warm-up request."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    url = f"http://127.0.0.1:{port}/v1/gate/batch"
    async with aiohttp.ClientSession() as session:
        best = float("inf")
        for _ in range(BATCH_ROUNDS + 1):
            started = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as resp:
                results = orjson.loads(await resp.read())["results"]
            assert len(results) == RECIPIENTS, resp.status
            best = min(best, time.perf_counter() - started)
    return RECIPIENTS / best


def _singles(port: int, key: str, numbers: list[str]) -> tuple[float, float, int]:
    """p50 and p99 ms of single checks from ``CLIENTS`` clients in ``CLIENT_PROCESSES``."""
    share = CLIENTS // CLIENT_PROCESSES
    with concurrent.futures.ProcessPoolExecutor(CLIENT_PROCESSES) as pool:
        parts = pool.map(
            _client_process,
            [(port, key, numbers, i * share, share) for i in range(CLIENT_PROCESSES)],
        )
        latencies = [ms for part in parts for ms in part]
    cuts = statistics.quantiles(latencies, n=100)
    return cuts[49], cuts[98], len(latencies)


def _client_process(job: tuple[int, str, list[str], int, int]) -> list[float]:
    return asyncio.run(_clients(*job))


async def _clients(port: int, key: str, numbers: list[str], first: int, count: int) -> list[float]:
    """Latencies (ms) of ``count`` concurrent clients, after a one-second warm-up.

    Each client is one keep-alive HTTP/1.1 connection speaking raw asyncio streams with
    prebuilt requests: an aiohttp client costs several times the CPU per request, and on two
    cores the load generator's own delays would otherwise dominate the tail it measures.
    """
    requests = []
    for n in numbers[:5_000]:
        body = orjson.dumps({**SCOPE, "to": n})
        head = (
            f"POST /v1/gate/check HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        requests.append(head.encode() + body)
    latencies: list[float] = []

    async def client(i: int, until: float) -> None:
        await asyncio.sleep(THINK_SECONDS * (i - first) / count)  # spread the first requests
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        n = i
        try:
            while time.perf_counter() < until:
                started = time.perf_counter()
                writer.write(requests[n % len(requests)])
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200"), head[:40]
                length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
                await reader.readexactly(length)
                latencies.append((time.perf_counter() - started) * 1000)
                n += CLIENTS
                await asyncio.sleep(THINK_SECONDS)
        finally:
            writer.close()

    warm_until = time.perf_counter() + 1.0
    await asyncio.gather(*(client(i, warm_until) for i in range(first, first + count)))
    latencies.clear()
    until = time.perf_counter() + CHECK_SECONDS
    await asyncio.gather(*(client(i, until) for i in range(first, first + count)))
    return latencies


async def run() -> None:
    """Both benchmarks, each next to its ceiling."""
    numbers = _numbers()
    body = orjson.dumps({**SCOPE, "to": numbers, "at": DAYTIME})
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp))
        try:
            created = await asyncio.to_thread(
                server.cli, "keys", "create", "--name", "bench", "--scopes", "read"
            )
            key = json.loads(created)["key"]
            await _seed(server.schema, numbers)
            await server.start()
            bare_port = _free_port()
            bare = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.run_api", "--bare", str(bare_port), cwd=ROOT
            )
            try:
                await _wait_port(bare_port)
                ours = await _batch(server.port, key, body)
                ceiling = await _batch(bare_port, key, body)
                print(
                    f"batch gate, send rules on: {ours:,.0f} recipients/s ({RECIPIENTS:,} per"
                    " request, streamed; acceptance >= 500,000)"
                )
                print(
                    f"  ceiling: bare aiohttp parse + stream, no lookups: {ceiling:,.0f}/s;"
                    f" ratio {ours / ceiling:.2f}"
                )
                before = await _counters(server.port)
                cpu_before = server.cpu_seconds()
                p50, p99, count = await asyncio.to_thread(_singles, server.port, key, numbers)
                cpu = server.cpu_seconds() - cpu_before
                during = _delta(await _counters(server.port), before)
                c50, c99, _ = await asyncio.to_thread(_singles, bare_port, key, numbers)
                print(
                    f"single check, {CLIENTS} concurrent clients ({count:,} checks): "
                    f"p50 {p50:.2f} ms, p99 {p99:.2f} ms (acceptance p99 <= 5 ms)"
                )
                print(f"  single checks' answers by source: {_by_source(during)}")
                if cpu >= 0:
                    # Warm-up checks included: the counters and the CPU cover the same ones.
                    checks = sum(v for k, v in during.items() if k[0] != "failures")
                    print(f"  gateway CPU per single check: {cpu / max(checks, 1) * 1e6:,.0f} us")
                failures = {k[1]: int(v) for k, v in during.items() if k[0] == "failures" and v}
                print(f"  cache failures during the single checks: {failures or 'none'}")
                print(
                    f"  ceiling: bare aiohttp constant answer: p50 {c50:.2f} ms, "
                    f"p99 {c99:.2f} ms; p99 ratio {p99 / c99:.2f}"
                )
            finally:
                bare.terminate()
                await asyncio.wait_for(bare.wait(), 10)
        finally:
            await server.stop()


async def _counters(port: int) -> dict[tuple[str, str], float]:
    """The gateway's gate answers by (allowed, source) and its cache failures by operation,
    from its Prometheus counters."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as resp,
    ):
        text = await resp.text()
    counts: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        value = float(line.rsplit(" ", 1)[-1]) if line[:1] == "g" else 0.0
        if line.startswith("gateway_gate_checks_total{"):
            allowed = line.split('allowed="', 1)[1].split('"', 1)[0]
            source = line.split('source="', 1)[1].split('"', 1)[0]
            counts[(allowed, source)] = value
        elif line.startswith("gateway_cache_failures_total{"):
            counts[("failures", line.split('operation="', 1)[1].split('"', 1)[0])] = value
    return counts


def _delta(
    after: dict[tuple[str, str], float], before: dict[tuple[str, str], float]
) -> dict[tuple[str, str], float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items()}


def _by_source(counts: dict[tuple[str, str], float]) -> str:
    """E.g. "cache 7,600 (refused 3,800), postgres 300 (refused 250)"."""
    parts = []
    for source in ("cache", "postgres"):
        allowed = counts.get(("true", source), 0.0)
        refused = counts.get(("false", source), 0.0)
        parts.append(f"{source} {allowed + refused:,.0f} (refused {refused:,.0f})")
    return ", ".join(parts)


async def _wait_port(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)  # start-up poll with a deadline
            continue
        writer.close()
        return
    raise RuntimeError(f"nothing listens on {port}")


def main() -> None:
    """Entry point for ``python -m bench.run_api`` and ``make bench``."""
    if len(sys.argv) == 3 and sys.argv[1] == "--bare":
        # On the loop `gateway serve` picks (uvloop when installed), as the gateway runs.
        from gateway.app.workers import LOOP_ENV, loop_factory

        _, factory = loop_factory(os.environ.get(LOOP_ENV, "auto"))
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(_bare_server(int(sys.argv[2])))
        return
    asyncio.run(run())


if __name__ == "__main__":
    main()
