"""Gateway processes for end-to-end tests: started as a user would, stopped by signal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from faults import free_port
from support import CONFIG, SECRET


class GatewayProcess:
    """``python -m gateway serve`` with a private config file, port and schema."""

    def __init__(
        self,
        workdir: Path,
        *,
        schema: str,
        redis_prefix: str,
        env: dict[str, str],
        name: str = "gw",
        rules: bool = False,
    ) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.config = workdir / f"{name}.toml"
        senders = (CONFIG.parent / "senders").as_posix()
        self.config.write_text(
            f'[gateway]\nsenders_dir = "{senders}"\n'
            f"[http]\nport = {self.port}\n"
            f'[database]\nschema = "{schema}"\npool_min = 1\npool_max = 4\n'
            f'[cache]\nkey_prefix = "{redis_prefix}"\nhealth_interval_seconds = 0.05\n'
            # Off unless asked: a test of consent must not depend on the hour it runs at.
            f"[rules]\nenabled = {'true' if rules else 'false'}\n",
            encoding="utf-8",
        )
        self.env = {**os.environ, "GATEWAY_SECRET_KEY": SECRET, **env}
        self.log = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the HTTP server."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, within: float = 10.0) -> float:
        """Start the process; return the seconds until /healthz answered."""
        started = time.monotonic()
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "--config", str(self.config), "serve"],
                cwd=self.workdir,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = started + within
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited: {self.log.read_text()[-2000:]}")
            try:
                health = f"{self.url}/healthz"  # always http://127.0.0.1
                with urllib.request.urlopen(health, timeout=0.5) as resp:  # noqa: S310
                    if resp.status == 200:
                        return time.monotonic() - started
            except OSError:
                time.sleep(0.05)
        self.stop(signal.SIGKILL)
        raise RuntimeError(f"gateway not up within {within}s: {self.log.read_text()[-2000:]}")

    def wait(self, within: float = 20.0) -> int:
        """Wait for an exit already asked for; return its status."""
        assert self.proc is not None
        code = self.proc.wait(timeout=within)
        self.proc = None
        return code

    def stop(self, sig: int = signal.SIGTERM, *, within: float = 20.0) -> int:
        """Send ``sig`` and wait for the exit status."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=within)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        return code
