"""``gateway serve --workers N --loop L``: the event loop a process runs on, and N of them.

One Python process uses one core. ``--workers N`` starts N ``gateway serve`` processes on
this host from the same configuration, and nothing else is shared between them that two
instances on two hosts do not already share: each worker opens its own pool, its own binds
to every configured SMSC (the same account: an SMSC serves several binds of one system_id,
SMPP 3.4 §2.2) and its own HTTP listener on the configured port with SO_REUSEPORT, so the
kernel spreads connections over them. PostgreSQL holds the consent
and the outbox (claimed ``FOR UPDATE SKIP LOCKED``, so each reply leaves from one worker
through that worker's binds) and Redis the shared cache, exactly as for separate
instances (tests/e2e/test_e2e_processes.py runs two on one schema). That is why more than
one worker needs ``GATEWAY_DATABASE_URL`` and ``GATEWAY_REDIS_URL``: an embedded
PostgreSQL or a cache in the process would be one per worker (docs/DESIGN.md, invariant 2).
Inbound SMTP is not shared yet (its per-client connection limit is counted in the process):
a configuration with ``[smtp]`` runs one worker, and more SMTP capacity is another instance.

The parent only watches: SIGTERM or SIGINT is passed to every worker, which drains as a
single ``serve`` does; a worker that ends on its own ends the others, and the parent exits
with the first non-zero status, so the service manager restarts the whole set
(docs/DESIGN.md, invariant 10). Every worker logs as ``serve`` logs.

``--loop`` (or ``GATEWAY_EVENT_LOOP``): ``uvloop`` (libuv's loop, when installed; ``auto``,
the default, takes it when it imports), or ``asyncio`` for the standard library's.
bench/run_smpp.py measured it; docs/benchmarks.md has the figures.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from gateway.app.gateway import REUSE_PORT_ENV
from gateway.app.serve import serve
from gateway.errors import ConfigError
from gateway.settings import Settings

log = logging.getLogger(__name__)

LOOPS = ("auto", "uvloop", "asyncio")
LOOP_ENV = "GATEWAY_EVENT_LOOP"
# Set by the parent for its workers: listen with SO_REUSEPORT (several processes, one port).
WORKER_ENV = "GATEWAY_WORKER"
MAX_WORKERS = 64


def loop_factory(choice: str) -> tuple[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The name and factory of the event loop ``choice`` asks for."""
    if choice not in LOOPS:
        raise ConfigError(f"--loop / {LOOP_ENV}: one of {', '.join(LOOPS)}, not {choice!r}")
    if choice != "asyncio":
        try:
            uvloop = importlib.import_module("uvloop")
        except ImportError as exc:
            if choice == "uvloop":
                raise ConfigError("--loop uvloop: uvloop is not installed") from exc
        else:
            factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
            return "uvloop", factory
    return "asyncio", asyncio.new_event_loop


def run_one(main: Coroutine[Any, Any, int], choice: str) -> int:
    """Run ``main`` (``serve``) to completion on the loop ``choice`` asks for."""
    try:
        name, factory = loop_factory(choice)
    except ConfigError:
        main.close()
        raise
    log.info("event loop", extra={"loop": name, "worker": os.environ.get(WORKER_ENV, "0")})
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def serve_command(settings: Settings, config: Path, workers: int, choice: str) -> int:
    """``gateway serve``: this process alone, or a parent of ``workers`` processes."""
    check_workers(settings, workers)
    if workers == 1:
        return run_one(serve(settings), choice)
    return run_workers(config, workers, choice)


def check_workers(settings: Settings, workers: int) -> None:
    """Refuse a worker count the configuration cannot share (module docstring)."""
    if not 1 <= workers <= MAX_WORKERS:
        raise ConfigError(f"--workers: 1 to {MAX_WORKERS}, not {workers}")
    if workers == 1:
        return
    if settings.embedded_database:
        raise ConfigError("--workers > 1 needs GATEWAY_DATABASE_URL (one PostgreSQL for all)")
    if settings.redis_url is None:
        raise ConfigError("--workers > 1 needs GATEWAY_REDIS_URL (one cache for all)")
    if "smtp" in settings.edges:
        raise ConfigError("--workers > 1 does not serve inbound SMTP: run it as one instance")


def run_workers(config: Path, workers: int, choice: str) -> int:
    """Start ``workers`` ``gateway serve`` processes, watch them, return the exit status."""
    loop_factory(choice)  # a bad --loop is refused once, here, not by every worker
    base = {**os.environ, REUSE_PORT_ENV: "1"}
    command = [sys.executable, "-m", "gateway", "--config", str(config), "serve", "--loop", choice]
    procs = [
        subprocess.Popen(command, env={**base, WORKER_ENV: str(n)})  # noqa: S603 - our own CLI
        for n in range(1, workers + 1)
    ]
    log.info("workers started", extra={"workers": workers, "pids": [p.pid for p in procs]})
    stopping = False

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return _watch(procs, lambda: stopping)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _watch(procs: Sequence[subprocess.Popen[bytes]], stopping: Callable[[], bool]) -> int:
    """Wait until every worker has ended; the first to end unasked stops the others."""
    first_failure = 0
    told = False
    while any(p.poll() is None for p in procs):
        ended = [p for p in procs if p.returncode is not None]
        for proc in ended:
            if proc.returncode and not first_failure:
                first_failure = proc.returncode
                log.error("worker ended", extra={"pid": proc.pid, "status": proc.returncode})
        if ended and not told and not stopping():
            told = True  # one worker alone cannot keep the set's promises: stop them all
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
    for proc in procs:
        if proc.returncode and not first_failure:
            first_failure = proc.returncode
    log.info("workers stopped", extra={"status": first_failure})
    # A negative returncode is a signal; report it as the shell would (128 + signal).
    return first_failure if first_failure >= 0 else 128 - first_failure
