"""Consent import at scale: time and peak memory of ``gateway consent import`` for a million rows.

Writes a Twilio-layout opt-in list of ``IMPORT_ROWS`` distinct numbers (default 1,000,000),
imports it into a fresh schema with the real command, as an operator runs it (its own process,
durable commits, Redis), then imports it again (every row ``unchanged``). Prints, for each
run, the wall time, rows per second and the process's peak resident memory (``ru_maxrss`` of
the child), next to the file's size: memory must not grow with the file.

Uses GATEWAY_BENCH_DATABASE_URL / GATEWAY_BENCH_REDIS_URL (default: the local servers).
Run: ``make bench BENCH=import`` or ``python -m bench.run_import``; ``IMPORT_ROWS=100000`` for a
shorter run. Not part of the test suite.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from bench.cleanup import drop_redis_prefix

PG_URL = os.environ.get("GATEWAY_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("GATEWAY_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-key-0123456789-0123456789-0123456789"  # noqa: S105 - bench only
ROWS = int(os.environ.get("IMPORT_ROWS", "1000000"))


def _write_file(path: Path, rows: int) -> None:
    """Twilio consent records: distinct valid NANP numbers, opt-ins of 2025."""
    with path.open("w", encoding="utf-8") as out:
        out.write("contact_id,correlation_id,sender_id,status,source,date_of_consent\n")
        for i in range(rows):
            area = 201 + i // 8_000_000
            out.write(
                f"+1{area}{2_000_000 + i % 8_000_000:07d},c{i},MG0,opt-in,website,"
                f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}T10:00:00Z\n"
            )


def _run(config: Path, path: Path) -> tuple[float, int, dict[str, object]]:
    """One import in its own process: (seconds, peak RSS in KiB, the summary it printed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env |= {
        "GATEWAY_SECRET_KEY": SECRET,
        "GATEWAY_DATABASE_URL": PG_URL,
        "GATEWAY_REDIS_URL": REDIS_URL,
    }
    errors = config.parent / "stderr.txt"
    started = time.perf_counter()
    with errors.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "--config", str(config), "consent", "import",
             str(path), "--layout", "twilio", "--sender", "12345", "--program", "reminders",
             "--disclosure", "bench-form-v1", "--no-progress"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )  # fmt: skip
        # wait4 gives this one child's resource usage: its own peak resident set.
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    text = errors.read_text()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"import failed: {text[-2000:]}")
    # The summary is the last thing printed; JSON log lines (warnings) may come before it.
    summary = json.loads(text[text.rindex('{\n  "file"') :])
    warnings = [line for line in text.splitlines() if line.startswith('{"')]
    summary["log_lines"] = len(warnings)
    if warnings:
        summary["first_log_line"] = warnings[0][:300]
    return seconds, usage.ru_maxrss, summary


async def _drop(schema: str) -> int:
    conn = await asyncpg.connect(PG_URL)
    try:
        events = await conn.fetchval(f'SELECT count(*) FROM "{schema}".ledger')  # noqa: S608 - our own schema name
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()
    return int(events)


def main() -> None:
    """Write the file, import it twice, print the figures."""
    schema, prefix = f"bench_import_{uuid.uuid4().hex[:8]}", f"bi{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="bench-import-") as work:
        config = Path(work) / "gateway.toml"
        config.write_text(
            f'[gateway]\nsenders_dir = "{(ROOT / "config" / "senders").as_posix()}"\n'
            f'[database]\nschema = "{schema}"\n[cache]\nkey_prefix = "{prefix}"\n'
            '[logging]\nlevel = "WARNING"\n',
            encoding="utf-8",
        )
        path = Path(work) / "twilio-opt-ins.csv"
        _write_file(path, ROWS)
        size = path.stat().st_size
        print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores")
        print(f"file: {ROWS:,} rows, {size / 1e6:.1f} MB")
        try:
            for label in ("import", "re-run"):
                seconds, peak_kib, summary = _run(config, path)
                print(
                    f"{label}: {seconds:.1f} s, {ROWS / seconds:,.0f} rows/s,"
                    f" peak RSS {peak_kib / 1024:.0f} MiB, outcomes {summary['outcomes']},"
                    f" {summary['log_lines']} log lines {summary.get('first_log_line', '')}"
                )
        finally:
            events = asyncio.run(_drop(schema))
            asyncio.run(drop_redis_prefix(REDIS_URL, prefix))
        print(f"ledger events written: {events:,}")


if __name__ == "__main__":
    main()
