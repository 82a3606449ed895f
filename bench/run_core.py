"""Core benchmarks: the inbound pipeline, the batch gate, and cross-instance opt-out latency.

Each figure is printed next to its ceiling measured in the same run on the same servers:

* pipeline events/s with durable commits (``synchronous_commit = on``) vs a bare loop of
  single-row INSERT + COMMIT on one connection to the same PostgreSQL;
* batch gate checks/s (100,000 recipients per call, answered by the near cache in step
  with Redis; also the first call, which reads Redis) vs bare ``MGET`` of as many keys,
  with the send rules off and on (one fixed daytime ``at``, so every answer is allowed and
  the figure does not depend on the hour the benchmark runs at);
* opt-out on instance A -> refused by instance B's gate, p50/p99 in milliseconds.

Uses GATEWAY_BENCH_DATABASE_URL / GATEWAY_BENCH_REDIS_URL (default: the local servers).
Run: ``make bench BENCH=core`` or ``python -m bench.run_core``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import statistics
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import redis.asyncio as aioredis

from bench.cleanup import drop_redis_prefix
from gateway.app import Gateway
from gateway.messages import InboundMessage, Method
from gateway.send_rules import SendTerms
from gateway.settings import CacheSettings, DatabaseSettings, Settings, load_settings
from keywords.model import Channel

PG_URL = os.environ.get("GATEWAY_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("GATEWAY_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
CONFIG = Path(__file__).resolve().parent.parent / "config" / "gateway.toml"
SECRET = "bench-secret-key-0123456789-0123456789-0123456789"  # noqa: S105 - bench only

PIPELINE_EVENTS = 20_000
CONCURRENCY = 512
GATE_RECIPIENTS = 100_000
GATE_ROUNDS = 5
LATENCY_SAMPLES = 300
# A Wednesday, 13:00 in New York (the seeded numbers' +1646): inside every shipped window.
DAYTIME = datetime(2026, 12, 2, 18, 0, tzinfo=UTC)


def settings_for(schema: str, prefix: str) -> Settings:
    """The example config on the benchmark's servers, in its own schema and key prefix."""
    base = load_settings(CONFIG, {"GATEWAY_SECRET_KEY": SECRET})
    return dataclasses.replace(
        base,
        database=DatabaseSettings(schema=schema, pool_min=4, pool_max=10),
        cache=CacheSettings(key_prefix=prefix),
        database_url=PG_URL,
        redis_url=REDIS_URL,
    )


def _number(i: int) -> str:
    """A distinct, well-formed North American number (exchange 555 and up)."""
    return f"+1415{5_550_000 + i:07d}"


def _mo(i: int, text: str) -> InboundMessage:
    return InboundMessage(
        channel=Channel.SMS,
        sender="12345",
        contact=_number(i),
        text=text,
        method=Method.SMS_KEYWORD,
        dedupe_key=f"bench:{text}:{i}",
        received_at=datetime.now(UTC),
    )


async def _bare_insert_loop(count: int) -> float:
    """Ceiling: one connection, one INSERT + COMMIT per row, durable."""
    conn = await asyncpg.connect(PG_URL, server_settings={"synchronous_commit": "on"})
    try:
        name = f"bench_bare_{uuid.uuid4().hex[:8]}"
        # A logged table: its commits flush WAL like the ledger's do.
        await conn.execute(f"CREATE TABLE {name} (id bigserial PRIMARY KEY, k text, v text)")
        started = time.perf_counter()
        for i in range(count):
            await conn.execute(f"INSERT INTO {name} (k, v) VALUES ($1, $2)", str(i), "x")  # noqa: S608
        elapsed = time.perf_counter() - started
        await conn.execute(f"DROP TABLE {name}")
        return count / elapsed
    finally:
        await conn.close()


async def _pipeline(gw: Gateway, count: int) -> tuple[float, float]:
    """Inbound events/s through classify -> decide -> commit, and p99 latency (ms)."""
    texts = ["START", "STOP", "HELP", "stop please", "FLU"]
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)
    latencies: list[float] = []

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            t0 = time.perf_counter()
            await gw.pipeline.handle(_mo(i, texts[i % len(texts)]))
            latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return count / elapsed, latencies[int(len(latencies) * 0.99)] * 1000


async def _seed_consent(gw: Gateway, count: int) -> list[str]:
    """Opted-in recipients written straight to the tables (seeding, not what is measured)."""
    numbers = [f"+1646{i:07d}" for i in range(count)]
    async with gw.pool.acquire() as conn:
        await conn.copy_records_to_table(
            "contacts", records=[("sms", n) for n in numbers], columns=["channel", "address"]
        )
        await conn.execute(
            "INSERT INTO consent (contact_id, sender, program, channel, state, version,"
            " updated_at, last_seq) SELECT id, '12345', 'reminders', 'sms', 'opted_in', 1,"
            " now(), 0 FROM contacts WHERE address LIKE '+1646%'"
        )
    return numbers


def _terms(gw: Gateway, rules: bool = True) -> SendTerms | None:
    """The rules' question at DAYTIME; ``rules=False``: the same question, rules off."""
    terms = gw.gate.terms("12345", "reminders", Channel.SMS, at=DAYTIME)
    return terms if rules or terms is None else dataclasses.replace(terms, batch=None)


async def _gate(gw: Gateway, numbers: list[str]) -> tuple[float, float, float, float]:
    """Batch gate checks/s: near cache cold (from Redis) and warm with the rules off and
    on, vs bare MGET."""
    off = _terms(gw, rules=False)
    await gw.gate.check_many("12345", "reminders", Channel.SMS, numbers, off)  # PG -> Redis
    gw.cache.forget_local()
    t0 = time.perf_counter()
    await gw.gate.check_many("12345", "reminders", Channel.SMS, numbers, off)  # Redis -> near
    cold = len(numbers) / (time.perf_counter() - t0)
    best = {False: 0.0, True: 0.0}
    for _ in range(GATE_ROUNDS):
        for rules in (False, True):
            terms = _terms(gw, rules)  # built per call, as the HTTP batch builds it
            t0 = time.perf_counter()
            answers = await gw.gate.check_many("12345", "reminders", Channel.SMS, numbers, terms)
            best[rules] = max(best[rules], len(numbers) / (time.perf_counter() - t0))
            assert all(a.allowed for a in answers)
    client = aioredis.Redis.from_url(REDIS_URL)
    keys = [f"bench-mget:{n}" for n in numbers]
    await client.mset(dict.fromkeys(keys, "i|1|0"))
    ceiling = 0.0
    try:
        for _ in range(GATE_ROUNDS):
            t0 = time.perf_counter()
            for start in range(0, len(keys), 10_000):
                await client.mget(keys[start : start + 10_000])
            ceiling = max(ceiling, len(keys) / (time.perf_counter() - t0))
    finally:
        await client.delete(*keys)
        await client.aclose()
    return cold, best[False], best[True], ceiling


async def _cross_instance(a: Gateway, b: Gateway) -> tuple[float, float]:
    """ms from A acknowledging a STOP to B's gate refusing the recipient."""
    samples: list[float] = []
    for i in range(LATENCY_SAMPLES):
        contact = 900_000 + i
        await a.pipeline.handle(_mo(contact, "START"))
        number = _number(contact)
        terms = _terms(b)
        assert (await b.gate.check("12345", "reminders", Channel.SMS, number, terms)).allowed
        await a.pipeline.handle(_mo(contact, "STOP"))
        acked = time.perf_counter()
        while (await b.gate.check("12345", "reminders", Channel.SMS, number, terms)).allowed:
            pass
        samples.append((time.perf_counter() - acked) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99)]


async def _drop(schema: str) -> None:
    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def run() -> None:
    """Run the three benchmarks and print each next to its ceiling."""
    schema, prefix = f"bench_{uuid.uuid4().hex[:8]}", f"bench{uuid.uuid4().hex[:6]}"
    settings = settings_for(schema, prefix)
    try:
        async with Gateway(settings, serve_http=False) as a:
            rate, p99 = await _pipeline(a, PIPELINE_EVENTS)
            ceiling = await _bare_insert_loop(5_000)
            print(f"pipeline: {rate:,.0f} inbound events/s (p99 {p99:.1f} ms, durable commits)")
            ratio = rate / ceiling
            print(f"  ceiling: bare INSERT+COMMIT loop {ceiling:,.0f} rows/s; ratio {ratio:.2f}")

            numbers = await _seed_consent(a, GATE_RECIPIENTS)
            cold, gate, ruled, mget = await _gate(a, numbers)
            print(f"batch gate: {gate:,.0f} checks/s ({GATE_RECIPIENTS:,} per call, near cache)")
            print(f"  first call after a restart (from Redis): {cold:,.0f} checks/s")
            print(f"  ceiling: bare MGET {mget:,.0f} keys/s; ratio {gate / mget:.2f}")
            print(
                f"batch gate, send rules on: {ruled:,.0f} checks/s; {ruled / gate:.2f} of the"
                f" same gate with rules off (target >= 500,000/s)"
            )

            async with Gateway(settings, serve_http=False) as b:
                p50, p99 = await _cross_instance(a, b)
            print(f"opt-out on A refused by B: p50 {p50:.2f} ms, p99 {p99:.2f} ms (target <= 50)")
    finally:
        await _drop(schema)
        await drop_redis_prefix(REDIS_URL, prefix)


def main() -> None:
    """Entry point for ``python -m bench``."""
    asyncio.run(run())


if __name__ == "__main__":
    main()
