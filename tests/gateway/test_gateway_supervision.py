"""Nothing dies in silence: supervised loops restart, a loop that keeps failing ends `serve`
non-zero, and /readyz and /metrics tell which part is down, over real HTTP."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import uuid

import aiohttp
import pytest
from support import eventually, sms

from gateway.app import EXIT_TASK_FAILED, Gateway, serve
from gateway.metrics import Metrics
from gateway.outbox import OutboxWorker
from gateway.settings import OutboxSettings, Settings
from gateway.supervisor import Supervisor, SupervisorSettings

FAST = SupervisorSettings(backoff_min=0.01, backoff_max=0.05, max_failures=3)


async def _get(gw: Gateway, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{gw.http_port}{path}") as resp,
    ):
        return resp.status, await resp.text()


async def test_a_loop_that_raises_or_returns_is_restarted_and_counted() -> None:
    """A loop that raises, then one that returns when it should run forever: each is
    restarted after a backoff, counted, and reported down meanwhile."""
    metrics = Metrics()
    supervisor = Supervisor(metrics, FAST)
    runs: list[str] = []
    ready = asyncio.Event()

    async def flaky() -> None:
        runs.append("flaky")
        if runs.count("flaky") < 3:
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
        ready.set()
        await asyncio.Event().wait()

    async def returns_early() -> None:
        runs.append("early")
        if runs.count("early") >= 2:
            await asyncio.Event().wait()

    supervisor.spawn("flaky", flaky)
    supervisor.spawn("early", returns_early)
    async with asyncio.timeout(5):
        await ready.wait()
    await eventually(lambda: runs.count("early") >= 2, interval=0.01, message="not restarted")

    assert ["flaky"] * 3 == [r for r in runs if r == "flaky"]
    assert supervisor.running("flaky")
    restarts = metrics.registry.get_sample_value
    assert 2.0 == restarts("gateway_task_restarts_total", {"task": "flaky"})
    assert 1.0 == restarts("gateway_task_up", {"task": "flaky"})
    assert 1.0 == restarts("gateway_task_restarts_total", {"task": "early"})
    assert not supervisor.fatal.is_set()
    await supervisor.stop()


async def test_a_loop_allowed_to_return_ends_and_on_down_runs_on_failure() -> None:
    """``returns=True`` ends quietly; a failure calls ``on_down`` before the restart."""
    supervisor = Supervisor(Metrics(), FAST)
    downs: list[str] = []
    calls = 0

    async def once() -> None:
        return

    async def fails_once() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")
        await asyncio.Event().wait()

    supervisor.spawn("once", once, returns=True)
    supervisor.spawn("guard", fails_once, on_down=lambda: downs.append("guard"))
    await eventually(
        lambda: supervisor.running("guard") and calls == 2,
        interval=0.01,
        message="the guard was not restarted once",
    )

    assert ["guard"] == downs
    assert {} == supervisor.down()
    await supervisor.stop()


async def test_a_loop_that_keeps_failing_makes_the_supervisor_give_up() -> None:
    """After ``max_failures`` failures in a row the supervisor sets ``fatal``."""
    supervisor = Supervisor(Metrics(), FAST)

    async def broken() -> None:
        raise RuntimeError("still broken")

    supervisor.spawn("broken", broken)
    async with asyncio.timeout(5):
        await supervisor.fatal.wait()

    assert "task broken failed 3 times in a row" == supervisor.fatal_reason
    assert {"broken": "RuntimeError: still broken"} == supervisor.down()
    await supervisor.stop()


async def test_serve_ends_non_zero_when_a_task_keeps_failing(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """`gateway serve` returns EX_SOFTWARE (70) instead of running on without its outbox
    monitor; every failure was logged at ERROR first."""

    async def broken(self: OutboxWorker) -> None:
        raise RuntimeError("monitor broken")

    monkeypatch.setattr(OutboxWorker, "monitor", broken)
    caplog.set_level(logging.ERROR)

    code = await asyncio.wait_for(serve(settings, supervision=FAST), 30)

    assert EXIT_TASK_FAILED == code
    failures = [r for r in caplog.records if getattr(r, "task", "") == "outbox-monitor"]
    assert len(failures) >= 3


async def test_readyz_is_not_ready_while_the_outbox_worker_is_down(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crashed outbox worker (in its restart backoff) makes /readyz 503 and names it;
    the intake scope stays ready, since opt-outs can still be recorded."""
    calls = 0
    original = OutboxWorker.run

    async def crash_once(self: OutboxWorker) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("worker crashed")
        await original(self)

    monkeypatch.setattr(OutboxWorker, "run", crash_once)
    slow = SupervisorSettings(backoff_min=3.0, backoff_max=3.0)
    async with Gateway(settings, supervision=slow) as gw:
        await eventually(
            lambda: calls == 1 and not gw.supervisor.running("outbox"),
            interval=0.01,
            message="the outbox did not fail once",
        )
        status, body = await _get(gw, "/readyz")
        intake, _ = await _get(gw, "/readyz?scope=intake")
        assert (503, 200) == (status, intake)
        assert '"task:outbox"' in body
        await eventually(
            lambda: gw.supervisor.running("outbox"),
            interval=0.01,
            message="the outbox was not restarted",
        )
        assert 200 == (await _get(gw, "/readyz"))[0]


async def test_readyz_is_not_ready_while_an_opt_out_confirmation_waits_too_long(
    settings: Settings,
) -> None:
    """No SMS route (its confirmations stay queued): once the STOP's confirmation is older
    than outbox.max_opt_out_age_seconds, /readyz says so; /metrics shows the backlog."""
    quick = dataclasses.replace(
        settings, outbox=OutboxSettings(max_opt_out_age_seconds=0.3, monitor_interval_seconds=0.05)
    )
    async with Gateway(quick) as gw:
        assert 200 == (await _get(gw, "/readyz"))[0]
        await gw.pipeline.handle(sms("STOP", key=f"t:{uuid.uuid4().hex}"))
        await asyncio.sleep(0.4)  # the age under test: a confirmation older than 0.3 s

        status, body = await _get(gw, "/readyz")
        assert 503 == status
        assert "opt_out_confirmations_late" in body
        assert 200 == (await _get(gw, "/readyz?scope=intake"))[0]
        await eventually(
            lambda: ("sms", "opt_out") in gw.metrics.outbox_waiting,
            interval=0.01,
            message="the outbox monitor never sampled the opt-out",
        )
        _, metrics = await _get(gw, "/metrics")
        assert re.search(r'gateway_outbox_backlog\{channel="sms",kind="opt_out"\} 1\.0', metrics)
        assert re.search(r'gateway_outbox_oldest_seconds\{channel="sms",kind="opt_out"\} ', metrics)
        assert 'gateway_task_up{task="outbox"} 1.0' in metrics
