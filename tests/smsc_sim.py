"""The SMSC simulator (tests/peers/smsc/simulator.js, node-smpp) as a test helper.

The simulator is a separate node process that shares no code with the gateway's codec; a
test starts one, points the gateway's [smpp] table at it, and drives it through its HTTP
control port: send MOs, flood, switch on misbehaviour, read what it received.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import shutil
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from support import eventually

from gateway.app import Gateway
from gateway.settings import OutboxSettings, Settings

SIM_DIR = Path(__file__).resolve().parent / "peers" / "smsc"
SIMULATOR = SIM_DIR / "simulator.js"
SYSTEM_ID = "gateway"
PASSWORD = "sim-pass"  # the simulator's test account


class Smsc:
    """One simulator process."""

    def __init__(self, *, retry_ms: int = 100, resp_timeout_ms: int = 10_000) -> None:
        self._args = ["--system-id", SYSTEM_ID, "--password", PASSWORD, "--retry-ms",
                      str(retry_ms), "--resp-timeout-ms", str(resp_timeout_ms)]  # fmt: skip
        self.proc: asyncio.subprocess.Process | None = None
        self.smpp_port = 0
        self.control_port = 0
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> Smsc:
        """Start node and wait for the line naming its ports."""
        node = shutil.which("node") or "/usr/bin/node"
        self.proc = await asyncio.create_subprocess_exec(
            node, str(SIMULATOR), *self._args, stdout=asyncio.subprocess.PIPE
        )
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 20)
        ports = json.loads(line)
        self.smpp_port, self.control_port = ports["smpp_port"], ports["control_port"]
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300))
        return self

    async def close(self) -> None:
        """Stop the simulator."""
        if self._http is not None:
            await self._http.close()
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
                try:
                    await asyncio.wait_for(self.proc.wait(), 5)
                except TimeoutError:
                    self.proc.kill()
                    await self.proc.wait()

    async def call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """One control request."""
        assert self._http is not None
        url = f"http://127.0.0.1:{self.control_port}{path}"
        async with self._http.request(method, url, json=body or {}) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def mo(self, text: str = "", *, source: str = "14155550123", dest: str = "12345",
                 **spec: Any) -> int:  # fmt: skip
        """Deliver one MO; return the command_status the gateway answered."""
        result = await self.call("POST", "/mo", {"source": source, "dest": dest, "text": text,
                                                 **spec})  # fmt: skip
        status: int = result["status"]
        return status

    async def mode(self, **settings: Any) -> None:
        """Switch behaviour (bind, submit, submit_count, dlr, enquire_link, window...)."""
        await self.call("POST", "/mode", settings)

    async def state(self) -> dict[str, Any]:
        """Counters, bound sessions and every submit_sm received."""
        state: dict[str, Any] = await self.call("GET", "/state")
        return state

    async def summary(self) -> dict[str, Any]:
        """Counters only: submits counted, distinct reply destinations."""
        summary: dict[str, Any] = await self.call("GET", "/summary")
        return summary

    async def submits(self) -> list[dict[str, Any]]:
        """Every submit_sm received so far."""
        submits: list[dict[str, Any]] = (await self.state())["submits"]
        return submits

    async def wait_for(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        *,
        within: float = 20.0,
        summary: bool = False,
    ) -> dict[str, Any]:
        """Poll the state (or, cheaper, its summary) until ``predicate`` holds."""
        last: dict[str, Any] = {}

        async def matched() -> dict[str, Any] | None:
            nonlocal last
            last = await self.summary() if summary else await self.state()
            return last if predicate(last) else None

        return await eventually(
            matched,
            timeout=within,
            interval=0.05,
            message=lambda: f"simulator state never matched: {_summary(last)}",
        )

    async def wait_bound(self, receivers: int = 1, *, within: float = 20.0) -> None:
        """Wait until the gateway has bound (at least ``receivers`` receiving sessions)."""
        await self.wait_for(lambda s: s["receivers"] >= receivers, within=within)

    def smpp_table(self, **smsc: Any) -> dict[str, Any]:
        """A gateway [smpp] table pointing one SMSC, ``sim``, at this simulator."""
        return {
            "reassembly_timeout_seconds": 5.0,
            "shutdown_timeout_seconds": 2.0,
            "senders": {"12345": ["sim"]},
            "smsc": {
                "sim": {
                    "host": "127.0.0.1",
                    "port": self.smpp_port,
                    "system_id": SYSTEM_ID,
                    "enquire_link_seconds": 5.0,
                    "response_timeout_seconds": 2.0,
                    "reconnect_min_seconds": 0.05,
                    "reconnect_max_seconds": 0.5,
                    "throttle_backoff_seconds": 0.05,
                    "submit_rate": 5000.0,
                    **smsc,
                }
            },
        }


def password_env() -> dict[str, str]:
    """The environment variable carrying the simulator account's password."""
    return {"GATEWAY_SMPP_SIM_PASSWORD": PASSWORD}


def _summary(state: dict[str, Any]) -> dict[str, Any]:
    return {k: (len(v) if isinstance(v, list) else v) for k, v in state.items()}


def smpp_settings(
    settings: Settings, sim: Smsc, top: dict[str, Any] | None = None, **smsc: Any
) -> Settings:
    """``settings`` with an [smpp] table bound to ``sim`` and a quick outbox."""
    return dataclasses.replace(
        settings,
        edges={**settings.edges, "smpp": {**sim.smpp_table(**smsc), **(top or {})}},
        env={**settings.env, **password_env()},
        outbox=OutboxSettings(
            poll_interval_seconds=0.1,
            backoff_base_seconds=0.05,
            backoff_max_seconds=0.3,
            lease_seconds=2.0,
        ),
    )


@asynccontextmanager
async def bound_gateway(
    settings: Settings, sim: Smsc, top: dict[str, Any] | None = None, **smsc: Any
) -> AsyncIterator[Gateway]:
    """A gateway bound to ``sim`` (waits for the bind)."""
    async with Gateway(smpp_settings(settings, sim, top, **smsc), serve_http=False) as gw:
        await sim.wait_bound()
        yield gw
