"""Headless Chromium for tests: Debian's /usr/bin/chromium driven over the DevTools protocol.

``Browser`` starts Chromium with a private profile and ``--remote-debugging-port=0`` (it
writes the chosen port to ``DevToolsActivePort``), opens one page target and talks to it
over an aiohttp websocket. Only what tests need: navigate, evaluate, keys, wait for loads.
Pass ``javascript=False`` to prove a page works without script.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
from support import eventually

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--remote-debugging-port=0",
]
_KEYS = {
    "Tab": ("Tab", "Tab", 9, ""),
    "Enter": ("Enter", "Enter", 13, "\r"),
    "Space": (" ", "Space", 32, " "),
}


class Browser:
    """One headless Chromium with one page."""

    def __init__(self, *, javascript: bool = True, start_timeout: float = 30.0) -> None:
        self._javascript = javascript
        self._timeout = start_timeout
        self._profile = Path(tempfile.mkdtemp(prefix="chromium-"))
        self._proc: asyncio.subprocess.Process | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Browser:
        self._proc = await asyncio.create_subprocess_exec(
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={self._profile}",
            "about:blank",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        port_file = self._profile / "DevToolsActivePort"
        proc = self._proc

        def port_written() -> str:
            """The file Chromium writes once it listens (polled: there is no event for it)."""
            if proc.returncode is not None:
                raise RuntimeError("chromium did not start")
            return port_file.read_text().strip() if port_file.exists() else ""

        written = await eventually(
            port_written, timeout=self._timeout, interval=0.05, message="chromium did not start"
        )
        port = int(written.split()[0])
        self._session = aiohttp.ClientSession()
        async with self._session.get(f"http://127.0.0.1:{port}/json/list") as resp:
            targets = await resp.json()
        page = next(t for t in targets if t["type"] == "page")
        self._ws = await self._session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        self._reader = asyncio.create_task(self._read())
        await self.send("Page.enable")
        if not self._javascript:
            await self.send("Emulation.setScriptExecutionDisabled", value=True)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()
        if self._proc is not None:
            self._proc.terminate()
            try:
                await asyncio.wait_for(self._proc.wait(), 10)
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()
        shutil.rmtree(self._profile, ignore_errors=True)

    async def _read(self) -> None:
        assert self._ws is not None
        async for msg in self._ws:
            data = json.loads(msg.data)
            future = self._pending.pop(data.get("id", -1), None)
            if future is not None and not future.done():
                future.set_result(data)
            elif "method" in data:
                self._events.put_nowait(data)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command; its ``result``."""
        assert self._ws is not None
        ident = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[ident] = future
        await self._ws.send_str(json.dumps({"id": ident, "method": method, "params": params}))
        answer = await asyncio.wait_for(future, 30)
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    async def wait_event(self, method: str) -> dict[str, Any]:
        """The next event called ``method`` within 30 s (earlier other events are dropped)."""
        async with asyncio.timeout(30):
            while True:
                event = await self._events.get()
                if event["method"] == method:
                    return event

    def _drain(self) -> None:
        while not self._events.empty():
            self._events.get_nowait()

    async def goto(self, url: str) -> None:
        """Navigate and wait for the load event."""
        self._drain()
        await self.send("Page.navigate", url=url)
        await self.wait_event("Page.loadEventFired")

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (DevTools runs it even with
        page scripts disabled: it inspects the page, the page itself runs nothing)."""
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def press(self, key: str) -> None:
        """A real key press (keyDown + keyUp), as a keyboard user makes it."""
        name, code, vk, text = _KEYS[key]
        common = {"key": name, "code": code, "windowsVirtualKeyCode": vk}
        await self.send("Input.dispatchKeyEvent", type="keyDown", text=text, **common)
        await self.send("Input.dispatchKeyEvent", type="keyUp", **common)

    async def press_and_wait_load(self, key: str) -> None:
        """Press a key that submits a form; wait until the next page has loaded."""
        self._drain()
        await self.press(key)
        await self.wait_event("Page.loadEventFired")
