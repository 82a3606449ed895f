"""What an operator reads: `gateway serve`'s log from start to a clean SIGTERM.

The gateway runs as a process, takes a STOP over the signed webhook (so the consent writer
has committed and holds its next transaction open), and is stopped as a service manager
stops it.
"""

from __future__ import annotations

import json
import signal
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from processes import GatewayProcess
from support import PG_URL, REDIS_URL, SECRET

from gateway.security.signing import HEADER, WEBHOOK_PURPOSE, derive_key, sign

pytestmark = pytest.mark.slow

KEY = derive_key(SECRET.encode(), WEBHOOK_PURPOSE)


def _stop_over_http(gw: GatewayProcess) -> None:
    body = json.dumps({"id": "ops-1", "from": "+14155550123", "to": "12345", "text": "STOP"})
    request = urllib.request.Request(  # noqa: S310 - http://127.0.0.1 only
        f"{gw.url}/v1/inbound/sms",
        data=body.encode(),
        headers={"Content-Type": "application/json", HEADER: sign(KEY, body.encode())},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
        assert 200 == resp.status


def _lines(gw: GatewayProcess) -> list[dict[str, Any]]:
    return [json.loads(line) for line in gw.log.read_text().splitlines() if line.startswith("{")]


def _served_and_stopped(tmp_path: Path, schema: str, prefix: str, env: dict[str, str]) -> list[Any]:
    gw = GatewayProcess(tmp_path, schema=schema, redis_prefix=prefix, env=env)
    try:
        gw.start()
        _stop_over_http(gw)
        assert 0 == gw.stop(signal.SIGTERM)
    finally:
        gw.stop(signal.SIGKILL)
    lines = _lines(gw)
    assert "stopped" == lines[-1]["msg"]
    return lines


def test_a_clean_shutdown_logs_no_error(tmp_path: Path, schema: str, redis_prefix: str) -> None:
    """SIGTERM after traffic, with Redis: exit 0 and not one line at ERROR or above (the
    writer's open transaction was reset by the pool with two ERROR lines before)."""
    env = {"GATEWAY_DATABASE_URL": PG_URL, "GATEWAY_REDIS_URL": REDIS_URL}
    lines = _served_and_stopped(tmp_path, schema, redis_prefix, env)

    assert [] == [line for line in lines if line["level"] in ("error", "critical")]


def test_without_redis_nothing_says_the_cache_came_back(
    tmp_path: Path, schema: str, redis_prefix: str
) -> None:
    """A single instance without Redis never had a cache to lose: no "cache reachable
    again", and no line at ERROR from start to stop either."""
    lines = _served_and_stopped(tmp_path, schema, redis_prefix, {"GATEWAY_DATABASE_URL": PG_URL})

    assert [] == [line["msg"] for line in lines if "reachable" in line["msg"]]
    assert [] == [line for line in lines if line["level"] in ("error", "critical")]
