"""Deployment as people run it: the image's refusal of the embedded database, compose.yaml
as the compose client reads it, and the lock files the image, `make run` and CI install."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from processes import GatewayProcess
from support import CONFIG, PG_URL, ROOT

from gateway.settings import load_settings

COMPOSE = ROOT / "compose.yaml"


def _gateway(tmp_path: Path, *args: str, allow: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "gw.toml"
    config.write_text(
        f'[gateway]\nsenders_dir = "{(CONFIG.parent / "senders").as_posix()}"\n'
        '[database]\nembedded_data_dir = "pg"\n[http]\nport = 0\n',
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY_ALLOW_EMBEDDED_DATABASE"] = allow
    return subprocess.run(
        [sys.executable, "-m", "gateway", "--config", str(config), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("command", [["serve"], ["migrate"], ["keys", "list"], ["audit", "verify"]])
def test_the_embedded_database_is_refused_where_the_image_refuses_it(
    tmp_path: Path, command: list[str]
) -> None:
    """With GATEWAY_ALLOW_EMBEDDED_DATABASE=0 (the image's default) and no database URL,
    every command that needs a database exits 2 with one line saying why, and creates no
    cluster."""
    done = _gateway(tmp_path, *command, allow="0")

    assert 2 == done.returncode
    assert "GATEWAY_ALLOW_EMBEDDED_DATABASE=1" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "pg").exists()


def test_a_value_other_than_0_or_1_is_refused(tmp_path: Path) -> None:
    """`yes` is not read as either answer: exit 2 naming the variable."""
    done = _gateway(tmp_path, "migrate", allow="yes")

    assert (2, True) == (done.returncode, "GATEWAY_ALLOW_EMBEDDED_DATABASE" in done.stderr)


def test_the_image_refuses_the_embedded_database_and_exposes_smtp() -> None:
    """The Dockerfile sets the refusal, exposes HTTP and SMTP, installs from the runtime lock
    and takes its health check's port from the configuration."""
    dockerfile = (ROOT / "Dockerfile").read_text()

    assert "GATEWAY_ALLOW_EMBEDDED_DATABASE=0" in dockerfile
    assert re.search(r"^EXPOSE 8080 2525$", dockerfile, re.MULTILINE)
    assert "--require-hashes -r requirements/runtime.txt" in dockerfile
    assert '"healthcheck"' in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "var", ".git"} <= set(ignored)


def _compose_client() -> list[str] | None:
    """`docker compose` (the CLI plugin) or a standalone compose v2, whichever answers."""
    docker = shutil.which("docker")
    candidates = [[docker, "compose"]] if docker else []
    standalone = shutil.which("docker-compose") or str(
        Path(sys.executable).parent / "docker-compose"
    )
    candidates.append([standalone])
    for client in candidates:
        try:
            done = subprocess.run(
                [*client, "version"], capture_output=True, text=True, timeout=30, check=False
            )
        except OSError:
            continue
        if done.returncode == 0 and "v2" in done.stdout:
            return client
    return None


def test_compose_config_is_valid() -> None:
    """`docker compose config` (no engine needed) accepts compose.yaml: two gateway replicas
    behind the proxy, Redis started with deploy/redis.conf, SMTP published."""
    client = _compose_client()
    if client is None:
        pytest.skip("no docker compose v2 client")
    env = {**os.environ, "POSTGRES_PASSWORD": "x" * 12, "REDIS_PASSWORD": "y" * 12,
           "GATEWAY_SECRET_KEY": "z" * 40}  # fmt: skip
    done = subprocess.run(
        [*client, "-f", str(COMPOSE), "config", "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert 0 == done.returncode, done.stderr
    config = json.loads(done.stdout)
    services = config["services"]
    assert {"postgres", "redis", "gateway", "proxy"} <= set(services)
    assert 2 == services["gateway"]["deploy"]["replicas"]
    assert "/usr/local/etc/redis/redis.conf" in services["redis"]["command"]
    published = {p["target"] for p in services["gateway"].get("ports", [])}
    assert 2525 in published


def test_the_locks_pin_every_declared_dependency() -> None:
    """Every dependency of pyproject.toml is pinned, with hashes, in the runtime lock; every
    dev group's in the dev lock; the two agree on every version they share."""

    def pins(name: str) -> dict[str, str]:
        text = (ROOT / "requirements" / name).read_text()
        found = dict(re.findall(r"^([a-z0-9][a-z0-9._-]*)==([^\s;\\]+)", text, re.MULTILINE))
        assert "--hash=sha256:" in text
        return {k.replace("_", "-").replace(".", "-"): v for k, v in found.items()}

    def names(specs: list[object]) -> set[str]:
        out = set()
        for spec in specs:
            if isinstance(spec, str):
                bare = re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0]
                out.add(bare.lower().replace("_", "-").replace(".", "-"))
        return out

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    runtime, dev = pins("runtime.txt"), pins("dev.txt")
    groups = project["dependency-groups"]
    assert names(project["project"]["dependencies"]) <= set(runtime)
    assert names(groups["test"] + groups["lint"]) | set(runtime) <= set(dev)
    assert {k: v for k, v in dev.items() if k in runtime} == runtime


def test_the_compose_configuration_trusts_the_proxy_alone() -> None:
    """deploy/gateway.toml loads as a replica loads it, listens for the proxy and trusts
    X-Forwarded-For from the proxy's fixed address only (compose.yaml)."""
    env = {
        "GATEWAY_SECRET_KEY": "k" * 40,
        "GATEWAY_DATABASE_URL": "postgresql://gateway@postgres/gateway",
        "GATEWAY_REDIS_URL": "redis://redis:6379/0",
    }
    settings = load_settings(ROOT / "deploy" / "gateway.toml", env)

    assert ("0.0.0.0", 8080) == (settings.http.host, settings.http.port)  # noqa: S104
    assert ("172.28.0.10/32",) == settings.http.trusted_proxies
    assert "ipv4_address: 172.28.0.10" in COMPOSE.read_text()
    assert 2525 == settings.edges["smtp"]["port"]


def test_healthcheck_asks_the_port_the_configuration_names(
    tmp_path: Path, schema: str, redis_prefix: str
) -> None:
    """`gateway healthcheck` (the image's HEALTHCHECK) exits 0 while the gateway on the
    configured port can record an opt-out, and 1 once it is gone."""
    gw = GatewayProcess(
        tmp_path, schema=schema, redis_prefix=redis_prefix, env={"GATEWAY_DATABASE_URL": PG_URL}
    )

    def healthcheck() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway", "--config", str(gw.config), "healthcheck"],
            capture_output=True, text=True, env=gw.env, timeout=30, check=False,
        )  # fmt: skip

    try:
        gw.start()
        up = healthcheck()
    finally:
        gw.stop(signal.SIGTERM)
    down = healthcheck()

    expected = f"http://127.0.0.1:{gw.port}/readyz?scope=intake: 200"
    assert (0, True) == (up.returncode, up.stdout.strip().endswith(expected))
    assert 1 == down.returncode
