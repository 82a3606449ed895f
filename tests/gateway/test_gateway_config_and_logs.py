"""Settings, the CLI's operator commands and log masking."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import logging
from contextlib import redirect_stdout
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import CONFIG, PG_URL, ROOT

from gateway.__main__ import main
from gateway.app.api_wiring import build_suppression
from gateway.errors import ConfigError
from gateway.logs import _ADDRESS_RE, JsonFormatter, _masked, mask, mask_address
from gateway.settings import load_settings


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_config_loads_with_defaults_documented() -> None:
    """The example config that `make run` uses is valid and keeps secrets out of the file."""
    settings = load_settings(CONFIG, {})
    assert settings.embedded_database
    assert settings.redis_url is None
    assert ROOT / "var" / "secret_key" == settings.dev_secret_file
    assert settings.dev_secret_file.exists() != settings.secret_key_is_ephemeral
    assert "12345" in {p.name.removesuffix(".toml") for p in settings.senders_dir.iterdir()}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[http]\nprot = 1\n", "http.prot: unknown key"),
        ("[http]\nport = 'x'\n", "http.port: expected int"),
        ("[nonsense]\n", "[nonsense]: unknown section"),
        ("[database]\nschema = 'Robert\"; DROP'\n", "database.schema"),
        ("[gateway]\nsenders = 'x'\n", "gateway.senders: unknown key"),
        ("not toml = = 1", "gateway.toml"),
    ],
)
def test_bad_settings_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    """A typo or wrong type is a start-up error that names the key."""
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_settings(_write(tmp_path, text), {})


def test_secrets_come_from_the_environment_only(tmp_path: Path) -> None:
    """A short key is refused; Redis without a shared key is refused."""
    path = _write(tmp_path, "")
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        load_settings(path, {"GATEWAY_SECRET_KEY": "short"})
    with pytest.raises(ConfigError, match="required when GATEWAY_REDIS_URL"):
        load_settings(path, {"GATEWAY_REDIS_URL": "redis://127.0.0.1:6379/0"})
    settings = load_settings(path, {"GATEWAY_SECRET_KEY": "k" * 40, "GATEWAY_DATABASE_URL": "x"})
    assert (b"k" * 40, "x", False) == (
        settings.secret_key,
        settings.database_url,
        settings.secret_key_is_ephemeral,
    )


def test_previous_and_suppression_secrets_are_checked(tmp_path: Path) -> None:
    """GATEWAY_PREVIOUS_SECRET_KEYS takes long secrets only (the current one dropped from
    it); GATEWAY_SUPPRESSION_KEYS is name:secret; a bad value stops the start."""
    path = _write(tmp_path, "")
    current = "c" * 40
    with pytest.raises(ConfigError, match="GATEWAY_PREVIOUS_SECRET_KEYS"):
        load_settings(path, {"GATEWAY_SECRET_KEY": current, "GATEWAY_PREVIOUS_SECRET_KEYS": "x"})
    previous = f"{'o' * 40}, {current}"
    settings = load_settings(
        path, {"GATEWAY_SECRET_KEY": current, "GATEWAY_PREVIOUS_SECRET_KEYS": previous}
    )
    assert (b"o" * 40,) == settings.previous_secret_keys
    assert 2 == len(build_suppression(settings).keys)
    for bad in ("nocolon", f"a:{'s' * 40},a:{'t' * 40}", "a:short"):
        env = {**settings.env, "GATEWAY_SUPPRESSION_KEYS": bad}
        with pytest.raises(ConfigError, match="GATEWAY_SUPPRESSION_KEYS"):
            build_suppression(dataclasses.replace(settings, env=env))


def test_a_damaged_development_key_file_is_refused_not_replaced(tmp_path: Path) -> None:
    """Without GATEWAY_SECRET_KEY the key file is read; a short one is an error naming it,
    and loading never writes the file."""
    path = _write(tmp_path, '[gateway]\ndev_secret_file = "keys/dev"\n')
    assert load_settings(path, {}).secret_key_is_ephemeral
    assert not (tmp_path / "keys").exists()
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "dev").write_bytes(b"short")
    with pytest.raises(ConfigError, match="keys/dev: the development key holds 5 bytes"):
        load_settings(path, {})
    (tmp_path / "keys" / "dev").write_bytes(b"d" * 48 + b"\n")
    assert (b"d" * 48, False) == (
        load_settings(path, {}).secret_key,
        load_settings(path, {}).secret_key_is_ephemeral,
    )


def test_check_config_passes_on_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    """`gateway check-config` finds nothing a carrier audit would flag in the example."""
    assert 0 == main(["--config", str(CONFIG), "check-config"])
    assert "0 errors, 0 warnings" in capsys.readouterr().out


def test_check_config_flags_a_help_reply_without_contact(tmp_path: Path) -> None:
    """A HELP reply without a contact is an audit error and a non-zero exit."""
    senders = tmp_path / "senders"
    senders.mkdir()
    source = (CONFIG.parent / "senders" / "12345.toml").read_text(encoding="utf-8")
    head, _, tail = source.partition("[templates.en]\nhelp = ")
    tail = tail.split("\n", 1)[1]
    broken = f'{head}[templates.en]\nhelp = "{{brand}}: reminders. Reply STOP to end."\n{tail}'
    (senders / "12345.toml").write_text(broken, encoding="utf-8")
    config = _write(tmp_path, "")
    out = io.StringIO()
    with redirect_stdout(out):
        status = main(["--config", str(config), "check-config"])
    assert 1 == status
    assert "error:" in out.getvalue()


def test_classify_prints_the_intent_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    """An operator can try a text against a sender's catalog."""
    assert 0 == main(["--config", str(CONFIG), "classify", "--to", "12345", "Stop please"])
    intent = json.loads(capsys.readouterr().out)
    assert ("opt_out_all", "leading_word", True) == (
        intent["kind"],
        intent["match"],
        intent["needs_review"],
    )


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("+14155550123", "+1********23"),
        ("jane.doe@example.org", "j***@example.org"),
    ],
)
def test_addresses_are_masked(raw: str, masked: str) -> None:
    """Logs keep enough to correlate, never the whole address."""
    assert masked == mask_address(raw)
    assert raw not in mask(f"contact {raw} wrote")


def test_one_line_with_both_kinds_masks_both() -> None:
    """One pass masks a number and an address side by side, and a number used as a mailbox."""
    line = mask("jane.doe@example.org called from +1 (415) 555-0123, then 4155550199@example.net")
    assert line == "j***@example.org called from +1********23, then 4***@example.net"


def test_log_lines_are_json_and_masked() -> None:
    """Even an address slipped into a message or a field is masked in the JSON line."""
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "from +14155550123", None, None)
    record.contact = "jane.doe@example.org"
    line = json.loads(JsonFormatter().format(record))
    assert "4155550123" not in line["msg"]
    assert "j***@example.org" == line["contact"]


@given(st.text(alphabet="abc@+.-() 0123456789é\n", max_size=40))
@settings(max_examples=2000, deadline=None)
def test_the_quick_screen_never_lets_an_address_through(text: str) -> None:
    """``mask`` skips the full pattern only for text it could not match anyway."""
    assert mask(text) == _ADDRESS_RE.sub(_masked, text)


def test_a_line_orjson_refuses_is_still_written() -> None:
    """A lone surrogate or an integer past 64 bits falls back to the json module."""
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "odd fields", None, None)
    record.text = "\udcff"
    record.big = 2**70
    line = json.loads(JsonFormatter().format(record))
    assert (line["text"], line["big"]) == ("\udcff", 2**70)


@pytest.mark.parametrize("created", [0.0, 1_795_000_000.9999, 1_795_000_001.0005, 1_795_000_001.5])
def test_timestamps_are_utc_milliseconds(created: float) -> None:
    """The cached-second timestamp reads as datetime's own RFC 3339 form, to the millisecond."""
    formatter = JsonFormatter()
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "at", None, None)
    record.created = created
    stamp = json.loads(formatter.format(record))["ts"]
    assert stamp.endswith("+00:00")
    assert len(stamp) == len("2026-11-28T05:06:40.413+00:00")
    expected = datetime.fromtimestamp(created, UTC)
    assert abs((datetime.fromisoformat(stamp) - expected).total_seconds()) < 0.001


async def test_migrate_and_audit_verify_from_the_command_line(
    tmp_path: Path, schema: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`gateway migrate` creates the schema; `gateway audit verify` exits 0, then 1 on a tamper."""
    config = _write(
        tmp_path,
        f'[gateway]\nsenders_dir = "{(CONFIG.parent / "senders").as_posix()}"\n'
        f'[database]\nschema = "{schema}"\n',
    )
    monkeypatch.setenv("GATEWAY_DATABASE_URL", PG_URL)
    monkeypatch.delenv("GATEWAY_REDIS_URL", raising=False)

    def run(*args: str) -> int:
        # The CLI runs its own event loop, as it does from a shell.
        return main(["--config", str(config), *args])

    assert 0 == await asyncio.to_thread(run, "migrate")
    assert 0 == await asyncio.to_thread(run, "audit", "verify")
    conn = await asyncpg.connect(PG_URL, server_settings={"search_path": schema})
    try:
        await conn.execute(
            "INSERT INTO contacts (channel, address) VALUES ('sms', '+14155550123');"
            "INSERT INTO ledger SELECT 1, id, 'sms', '12345', 'reminders', 'opt_in', 'api',"
            " 'none', 'opted_in', now(), NULL, NULL, '{}', '\\x00', '\\x00', '\\x00'"
            " FROM contacts"
        )
    finally:
        await conn.close()
    capsys.readouterr()
    assert 1 == await asyncio.to_thread(run, "audit", "verify")
    report = json.loads(capsys.readouterr().out)
    assert (False, 1) == (report["ok"], report["events"])
