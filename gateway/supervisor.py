"""Task supervision (I/O layer): every long-running loop of the gateway starts here.

A loop that ends unexpectedly, by an exception or by returning when it should run forever,
is logged at ERROR (the exception's type and a masked message, never a body or address),
counted in ``gateway_task_restarts_total``, reported down, and restarted after an
exponential backoff with jitter. A task that keeps failing (``max_failures`` in a row, each
within ``healthy_after`` seconds of its start) is given up on: the supervisor sets
``fatal`` and ``gateway serve`` ends the process with a non-zero status, so the service
manager restarts the whole process instead of leaving a gateway that silently does less
than it promises. Nothing is left to die in silence: ``/readyz`` and ``gateway_task_up``
show which task is down.

``on_down`` runs when a task stops unexpectedly, before the backoff: e.g. the cache guard's
task makes the gate distrust the cache, since nobody watches Redis while it is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.logs import mask
from gateway.metrics import Metrics

log = logging.getLogger(__name__)

Factory = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class SupervisorSettings:
    """How failing tasks are restarted, and when the supervisor gives up."""

    backoff_min: float = 0.1
    backoff_max: float = 30.0
    max_failures: int = 10  # in a row, each within ``healthy_after`` of its start
    healthy_after: float = 60.0  # a run this long resets the count


@dataclass(slots=True)
class _Supervised:
    name: str
    factory: Factory
    returns: bool
    on_down: Callable[[], None] | None
    task: asyncio.Task[None] | None = None
    running: bool = False
    failures: int = 0
    restarts: int = 0
    last_error: str = ""
    # Why it ended for good: "returned" (a loop allowed to), "stopped" (asked to), "gave up".
    ended: str = ""


class Supervisor:
    """Starts, watches and restarts the gateway's loops; stops them in reverse order."""

    def __init__(self, metrics: Metrics, settings: SupervisorSettings | None = None) -> None:
        policy = settings or SupervisorSettings()
        self._metrics = metrics
        self._backoff_min = policy.backoff_min
        self._backoff_max = policy.backoff_max
        self._max_failures = policy.max_failures
        self._healthy_after = policy.healthy_after
        self._tasks: dict[str, _Supervised] = {}
        self._stopping = False
        self.fatal = asyncio.Event()
        self.fatal_reason = ""
        metrics.watch_tasks(self.states)

    def spawn(
        self,
        name: str,
        factory: Factory,
        *,
        returns: bool = False,
        on_down: Callable[[], None] | None = None,
    ) -> None:
        """Run ``factory()`` as the task ``name`` until ``stop``.

        ``returns``: the loop may end by returning (an SMPP session after its unbind); such
        an end is final. Otherwise returning is as unexpected as raising, and restarts it.
        """
        if name in self._tasks:
            raise ValueError(f"task {name!r} already supervised")
        entry = _Supervised(name, factory, returns, on_down)
        self._tasks[name] = entry
        entry.task = asyncio.create_task(self._keep(entry), name=name)

    def give_up(self, reason: str) -> None:
        """A part that cannot be restarted failed: ``gateway serve`` ends non-zero."""
        log.critical("giving up", extra={"reason": reason})
        self.fatal_reason = reason
        self.fatal.set()

    def running(self, name: str) -> bool:
        """True while the task ``name`` is running (not in its backoff, not ended)."""
        entry = self._tasks.get(name)
        return entry is not None and entry.running

    def states(self) -> dict[str, bool]:
        """Every task and whether it runs now."""
        return {name: entry.running for name, entry in self._tasks.items()}

    def down(self) -> dict[str, str]:
        """Tasks that are not running although they should, with their last error."""
        return {
            name: entry.last_error or "not running"
            for name, entry in self._tasks.items()
            if not entry.running and entry.ended not in ("returned", "stopped")
        }

    async def _keep(self, entry: _Supervised) -> None:
        try:
            while not self._stopping:
                started = time.monotonic()
                entry.running = True
                try:
                    await entry.factory()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # anything that ends a loop is reported, then restarted
                    entry.last_error = f"{type(exc).__name__}: {mask(str(exc))[:200]}"
                    log.error(
                        "task failed; restarting it",
                        extra={"task": entry.name, "error": entry.last_error},
                        exc_info=exc,
                    )
                else:
                    if entry.returns or self._stopping:
                        entry.ended = "returned"
                        return
                    entry.last_error = "returned unexpectedly"
                    log.error("task ended unexpectedly; restarting it", extra={"task": entry.name})
                finally:
                    entry.running = False
                if entry.on_down is not None:
                    entry.on_down()
                if time.monotonic() - started >= self._healthy_after:
                    entry.failures = 0
                entry.failures += 1
                entry.restarts += 1
                self._metrics.task_restarts.labels(entry.name).inc()
                if entry.failures >= self._max_failures:
                    self.fatal_reason = f"task {entry.name} failed {entry.failures} times in a row"
                    log.critical(
                        "giving up on a task",
                        extra={
                            "task": entry.name,
                            "failures": entry.failures,
                            "error": entry.last_error,
                        },
                    )
                    entry.ended = "gave up"
                    self.fatal.set()
                    return
                ceiling = min(self._backoff_max, self._backoff_min * 2 ** (entry.failures - 1))
                await asyncio.sleep(random.uniform(ceiling / 2, ceiling))  # noqa: S311 - jitter
        except asyncio.CancelledError:
            entry.ended = entry.ended or "stopped"
            raise
        finally:
            entry.running = False

    async def stop(self) -> None:
        """Cancel every task, the last started first, and wait until each has ended."""
        self._stopping = True
        for entry in reversed(list(self._tasks.values())):
            task = entry.task
            if task is None:
                continue
            # Cancel again until it ends: on 3.11 a cancel landing as a timeout fires can be
            # swallowed (CPython gh-86296), and a loop task would then never stop.
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=1.0)
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def stop_one(self, name: str) -> None:
        """Cancel one task now (its owner is shutting down) and wait until it ended."""
        entry = self._tasks.get(name)
        if entry is None or entry.task is None:
            return
        entry.ended = "stopped"  # an end asked for is not a failure
        while not entry.task.done():
            entry.task.cancel()
            await asyncio.wait({entry.task}, timeout=1.0)
        with contextlib.suppress(asyncio.CancelledError):
            await entry.task
