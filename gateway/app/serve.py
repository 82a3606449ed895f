"""``gateway serve``: one process's life around a ``Gateway``: signals, exit status, tuning.

The gateway runs until SIGTERM or SIGINT, then drains (HTTP and SMTP stop taking work, the
writer commits what it holds, the binds unbind) and exits 0; a supervised task that keeps
failing ends it with ``EXIT_TASK_FAILED`` instead, so the service manager restarts a process
that can no longer keep its promises (gateway/supervisor.py).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal

from gateway.app.gateway import Gateway
from gateway.settings import Settings
from gateway.supervisor import SupervisorSettings

log = logging.getLogger(__name__)


def tune_runtime() -> None:
    """Process-wide settings `gateway serve` runs with (benchmarks apply them too).

    The near cache holds hundreds of thousands of long-lived objects; with CPython's
    default thresholds (700, 10, 10) the collector walks them so often that gate checks
    queue behind it (bench/run_api.py: single-check p99 ~150 ms -> ~6 ms). Young garbage
    is still collected, just in larger, rarer passes.
    """
    gc.set_threshold(50_000, 20, 100)


EXIT_TASK_FAILED = 70  # EX_SOFTWARE (sysexits.h): a task kept failing; restart the process


async def serve(settings: Settings, *, supervision: SupervisorSettings | None = None) -> int:
    """Run until SIGTERM or SIGINT, then drain and stop; return the exit status.

    A supervised task that keeps failing ends the run too, with ``EXIT_TASK_FAILED``, so the
    service manager restarts a process that can no longer keep its promises.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tune_runtime()
    async with Gateway(settings, supervision=supervision, write_dev_key=True) as gateway:
        log.info(
            "gateway ready",
            extra={"senders": sorted(gateway.catalogs), "port": gateway.http_port},
        )
        stopped = asyncio.create_task(stop.wait())
        failed = asyncio.create_task(gateway.supervisor.fatal.wait())
        await asyncio.wait({stopped, failed}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        failed.cancel()
        if gateway.supervisor.fatal.is_set():
            log.critical("stopping: %s", gateway.supervisor.fatal_reason)
            code = EXIT_TASK_FAILED
        else:
            log.info("stopping: draining in-flight work")
            code = 0
    log.info("stopped")
    return code
