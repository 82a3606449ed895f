"""The operator's commands as processes, against the test's schema: the report (JSON, HTML,
PDF through Chromium), a receipt and its check, the receipt key, a list, the review queue
and an import's dry run with its progress on stderr."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from audit_http import call, new_key, opt_in_body
from support import CONFIG, PG_URL, REDIS_URL, SECRET, sms

from gateway.app import Gateway
from gateway.settings import Settings

pytestmark = pytest.mark.slow


def _config(folder: Path, settings: Settings) -> Path:
    path = folder / "gateway.toml"
    path.write_text(
        f'[gateway]\nsenders_dir = "{(CONFIG.parent / "senders").as_posix()}"\n'
        f'[database]\nschema = "{settings.database.schema}"\n'
        f'[cache]\nkey_prefix = "{settings.cache.key_prefix}"\n',
        encoding="utf-8",
    )
    return path


async def _gateway_cli(config: Path, *args: str) -> tuple[int, bytes, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env |= {
        "GATEWAY_SECRET_KEY": SECRET,
        "GATEWAY_DATABASE_URL": PG_URL,
        "GATEWAY_REDIS_URL": REDIS_URL,
    }
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "gateway", "--config", str(config), *args],
        env=env,
        capture_output=True,
        timeout=180,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr.decode()


async def test_the_commands_an_operator_answers_an_auditor_with(
    gateway: Gateway, settings: Settings, tmp_path: Path
) -> None:
    key = await new_key(gateway, "admin")
    await call(gateway, "POST", "/v1/consent", key=key, json=opt_in_body("+14155550123", "a"))
    await gateway.pipeline.handle(sms("stop please", contact="+14155550123"))
    config = _config(tmp_path, settings)
    start = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    end = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    code, out, err = await _gateway_cli(
        config, "audit", "report", "--from", start, "--to", end, "--format", "json"
    )
    assert 0 == code, err
    report = json.loads(out)
    assert report["chain"]["ok"]
    assert 1 == report["review_queue"]["flagged"]
    assert "report [" in err  # the progress bar, on stderr
    code, out, err = await _gateway_cli(
        config,
        "audit",
        "report",
        "--from",
        start,
        "--to",
        end,
        "--format",
        "pdf",
        "--output",
        str(tmp_path / "r.pdf"),
    )
    assert 0 == code, err
    assert (tmp_path / "r.pdf").read_bytes().startswith(b"%PDF")

    code, out, err = await _gateway_cli(
        config,
        "audit",
        "receipt",
        "--channel",
        "sms",
        "--contact",
        "(415) 555-0123",
        "--output",
        str(tmp_path / "receipt.json"),
    )
    assert 0 == code, err
    code, out, _ = await _gateway_cli(config, "audit", "receipt-key")
    public_key = json.loads(out)["public_key"]
    code, out, _ = await _gateway_cli(
        config,
        "audit",
        "verify-receipt",
        str(tmp_path / "receipt.json"),
        "--public-key",
        public_key,
    )
    assert (0, True) == (code, json.loads(out)["ok"])

    code, out, _ = await _gateway_cli(config, "consent", "export", "opt-outs", "--sender", "12345")
    assert b"+14155550123,reminders," in out
    code, out, _ = await _gateway_cli(config, "review", "list")
    (item,) = json.loads(out)["items"]
    code, out, _ = await _gateway_cli(
        config, "review", "confirm", str(item["inbound_id"]), "--note", "a clear stop"
    )
    assert (0, "confirmed") == (code, json.loads(out)["decision"])

    listing = tmp_path / "optouts.csv"
    listing.write_text(
        "contact_id,correlation_id,sender_id,status,source,date_of_consent\n"
        "+14155550177,c1,MG0,opt-out,opt-out-message,2025-01-01T00:00:00Z\n",
        encoding="utf-8",
    )
    code, out, err = await _gateway_cli(
        config,
        "consent",
        "import",
        str(listing),
        "--layout",
        "twilio",
        "--sender",
        "12345",
        "--program",
        "reminders",
        "--dry-run",
    )
    assert 0 == code, err
    assert {
        "line": 2,
        "contact": "+14155550177",
        "program": "reminders",
        "from": "none",
        "to": "opted_out",
    } == json.loads(out)
    assert '"would_apply": 1' in err
    assert "import optouts.csv [" in err
