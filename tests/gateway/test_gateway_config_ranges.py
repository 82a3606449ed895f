"""Config that refuses nonsense before it serves: ranges and relations named by file and key,
in `check-config` and in `serve` (one line, exit 2, no traceback), and a reference config
that lists every key the code reads."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import tomllib
import typing
from pathlib import Path
from typing import Any

import pytest
from support import CONFIG, PG_URL, ROOT, SECRET

from gateway.__main__ import main
from gateway.app.config_check import EdgeSettings, check_settings
from gateway.edges.smpp.config import SmppSettings, SmscSettings
from gateway.settings import GatewayTable, Settings, load_settings

SMPP_DEMO = ROOT / "config" / "smpp-demo.toml"
SMSC = '[smpp.senders]\n"12345" = ["a"]\n[smpp.smsc.a]\nsystem_id = "gw"\n'


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    (tmp_path / "senders").symlink_to(CONFIG.parent / "senders")
    return path


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The process environment `gateway` reads: a secret, a database URL, one SMSC password."""
    monkeypatch.setenv("GATEWAY_SECRET_KEY", SECRET)
    monkeypatch.setenv("GATEWAY_DATABASE_URL", PG_URL)
    monkeypatch.setenv("GATEWAY_SMPP_A_PASSWORD", "secret")
    monkeypatch.delenv("GATEWAY_REDIS_URL", raising=False)


# (the file's text, the key named, what is said about it). Each passed `check-config`
# before, and most made `serve` die with a traceback, spin, or misbehave at run time.
BAD = [
    ("[http]\nport = 99999\n", "http.port", "must be between 0 and 65535"),
    ("[http]\nport = -1\n", "http.port", "must be between 0 and 65535"),
    ("[http]\nmax_body_bytes = 0\n", "http.max_body_bytes", "between 1024 and 16777216"),
    ("[http]\nsignature_tolerance_seconds = -5\n", "http.signature_tolerance_seconds",
     "between 1 and 86400"),
    ("[database]\npool_min = 8\npool_max = 4\n", "database.pool_min",
     "must be at most database.pool_max (4), got 8"),
    ("[database]\npool_min = 20\n", "database.pool_min", "at most database.pool_max (10)"),
    ("[database]\npool_max = 2\n", "database.pool_max", "at least 3"),
    ("[database]\ncommand_timeout_seconds = 0\n", "database.command_timeout_seconds",
     "greater than 0"),
    ("[cache]\nentry_ttl_seconds = 0\n", "cache.entry_ttl_seconds", "at least 1"),
    ("[cache]\nhealth_interval_seconds = -0.1\n", "cache.health_interval_seconds",
     "greater than 0"),
    ("[cache]\nkey_prefix = ''\n", "cache.key_prefix", "must not be empty"),
    ("[pipeline]\nmax_batch = 0\n", "pipeline.max_batch", "at least 1"),
    ("[pipeline]\ndefault_region = 'XX'\n", "pipeline.default_region", "phonenumbers knows"),
    ("[outbox]\nbackoff_base_seconds = -1.0\n", "outbox.backoff_base_seconds", "greater than 0"),
    ("[outbox]\nbackoff_base_seconds = 600.0\n", "outbox.backoff_base_seconds",
     "at most outbox.backoff_max_seconds (300.0)"),
    ("[outbox]\npoll_interval_seconds = -1\n", "outbox.poll_interval_seconds", "greater than 0"),
    ("[outbox]\nbatch_size = 0\n", "outbox.batch_size", "at least 1"),
    ("[outbox]\nlease_seconds = 0\n", "outbox.lease_seconds", "greater than 0"),
    ("[outbox]\nmax_opt_out_age_seconds = -1\n", "outbox.max_opt_out_age_seconds", "at least 0"),
    ("[logging]\nlevel = 'verbose'\n", "logging.level", "must be one of 'DEBUG'"),
    ("[gateway]\nsenders_dir = ''\n", "gateway.senders_dir", "must not be empty"),
    ("[email]\ntoken_ttl_days = 10\n", "email.token_ttl_days", "CAN-SPAM"),
    ("[email]\ntoken_ttl_days = 100000000\n", "email.token_ttl_days", "between 30 and 3650"),
    ("[email]\nrelay_port = 0\n", "email.relay_port", "between 1 and 65535"),
    ("[email]\nrelay_host = '127.0.0.1'\nrelay_timeout_seconds = 90.0\n", "outbox.lease_seconds",
     "greater than email.relay_timeout_seconds (90.0"),
    ("[smtp]\ndomains = ['x.example']\nport = 70000\n", "smtp.port", "between 0 and 65535"),
    ("[smtp]\ndomains = ['x.example']\nmax_connections = 0\n", "smtp.max_connections",
     "at least 1"),
    ("[smtp]\ndomains = ['x.example']\ndns_timeout_seconds = 20.0\n", "smtp.dns_timeout_seconds",
     "at most smtp.auth_timeout_seconds (10.0)"),
    ("[smtp]\ndomains = ['x.example']\nport = 8080\n", "smtp.port", "must differ from http.port"),
    ("[api]\npreference_link_ttl_days = 0\n", "api.preference_link_ttl_days", "between 1"),
    ("[api]\nmax_send_segments = 0\n", "api.max_send_segments", "between 1 and 255"),
    ("[api]\nmax_send_segments = 256\n", "api.max_send_segments", "3GPP TS 23.040"),
    ("[providers.twilio]\ntimeout_seconds = -1.0\n", "providers.twilio.timeout_seconds",
     "greater than 0"),
    ("[smpp]\nreassembly_timeout_seconds = 0.0\n", "smpp.reassembly_timeout_seconds",
     "greater than 0"),
    ("[smpp]\ndefault_alphabet = 'utf8'\n", "smpp.default_alphabet", "must be one of"),
    (SMSC + "port = 0\n", "smpp.smsc.a.port", "between 1 and 65535"),
    (SMSC + "window = 0\n", "smpp.smsc.a.window", "between 1 and 1000"),
    (SMSC + "reconnect_min_seconds = 90.0\n", "smpp.smsc.a.reconnect_min_seconds",
     "at most smpp.smsc.a.reconnect_max_seconds (60.0)"),
    (SMSC + "throttle_backoff_seconds = -0.5\n", "smpp.smsc.a.throttle_backoff_seconds",
     "greater than 0"),
    (SMSC + "enquire_link_seconds = 0\n", "smpp.smsc.a.enquire_link_seconds", "greater than 0"),
    (SMSC + "source_ton = 9\n", "smpp.smsc.a.source_ton", "SMPP 3.4 section 5.2.5"),
    (SMSC + "dest_npi = 2\n", "smpp.smsc.a.dest_npi", "SMPP 3.4 section 5.2.6"),
    (SMSC.replace('"gw"', '"a-system-id-that-is-too-long"'), "smpp.smsc.a.system_id",
     "at most 15 characters"),
]  # fmt: skip


@pytest.mark.usefixtures("environment")
@pytest.mark.parametrize(("text", "key", "says"), BAD, ids=[b[1] for b in BAD])
def test_check_config_refuses_a_value_out_of_range_naming_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, key: str, says: str
) -> None:
    """`gateway check-config` exits 2 with one line naming the file, the key and the range
    or relation it breaks, for every table (the edges' too), before any sender is read."""
    path = _config(tmp_path, text)
    assert 2 == main(["--config", str(path), "check-config"])
    captured = capsys.readouterr()
    assert "" == captured.out
    assert 1 == len(captured.err.splitlines())
    assert captured.err.startswith(f"gateway: {path}: ")
    assert f" {key}: " in captured.err
    assert says in captured.err


@pytest.mark.usefixtures("environment")
def test_several_bad_values_of_one_table_are_named_together(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every range broken in one table is reported at once, so one run shows them all."""
    path = _config(tmp_path, "[outbox]\npoll_interval_seconds = 0\nbatch_size = 0\n")
    assert 2 == main(["--config", str(path), "check-config"])
    err = capsys.readouterr().err
    assert ["outbox.poll_interval_seconds", "outbox.batch_size"] == re.findall(
        r"outbox\.[a-z_]+(?=: must)", err
    )


@pytest.mark.usefixtures("environment")
def test_values_on_the_bounds_are_accepted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The bounds themselves are valid: port 0 (any free port) and 65535, pool_min equal to
    pool_max, an unchecked opt-out age of 0, a one-segment send cap, base equal to max."""
    text = (
        "[http]\nport = 65535\n[database]\npool_min = 3\npool_max = 3\n"
        "[outbox]\nmax_opt_out_age_seconds = 0\nbackoff_base_seconds = 5\n"
        "backoff_max_seconds = 5\n[api]\nmax_send_segments = 1\n"
        "[smtp]\ndomains = ['x.example']\nport = 0\n"
    )
    assert 0 == main(["--config", str(_config(tmp_path, text)), "check-config"])
    assert "2 senders, 0 errors" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[http]\nport = 99999\n", "http.port"),
        ("[database]\npool_min = 8\npool_max = 4\n", "database.pool_min"),
        (
            "[outbox]\nbackoff_base_seconds = -1.0\npoll_interval_seconds = -1.0\n",
            "outbox.poll_interval_seconds",
        ),
    ],
    ids=["port", "pool", "negative"],
)
def test_serve_with_a_bad_value_says_one_line_and_exits_2(
    tmp_path: Path, schema: str, text: str, key: str
) -> None:
    """`gateway serve` as a process: one line naming file and key on stderr, exit status 2,
    no traceback, nothing started (before: a traceback from bind() or asyncpg, exit 1, or
    for a negative poll interval an outbox loop spinning at full CPU that SIGTERM did not
    stop)."""
    path = _config(
        tmp_path, f'[database]\nschema = "{schema}"\n' + text.replace("[database]\n", "")
    )
    env = {**os.environ, "GATEWAY_SECRET_KEY": SECRET, "GATEWAY_DATABASE_URL": PG_URL}
    env.pop("GATEWAY_REDIS_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "--config", str(path), "serve"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert (2, "") == (done.returncode, done.stdout)
    assert [f"gateway: {path}: {key}"] == [
        line.split(": must")[0] for line in done.stderr.splitlines()
    ]
    assert "Traceback" not in done.stderr


# ---------------------------------------------------------------------------------------
# The reference configuration names every key the code reads.
#
# The rule: config/gateway.toml is the reference for every table but the [smpp] family,
# whose reference is config/smpp-demo.toml ([smpp] and one [smpp.smsc.<name>]; the
# [smpp.senders] table maps senders to SMSC names and has no fixed keys). A key counts when
# it is written on a line of its own, active (`key = value`) or commented out (`# key =
# value`), under a table header that is itself active or commented (`# [email]`); a key
# mentioned inside a comment's prose does not count. Both directions are checked: every
# field is written, and every key written is a field (no stale or misspelt key).

_HEADER = re.compile(r"^#?\s*\[([a-z0-9_.]+)\]\s*(#.*)?$")
_KEY = re.compile(r"^#?\s*([a-z_][a-z0-9_]*)\s*=")
_COMMENTED = re.compile(r"^# (?=\[[a-z0-9_.]+\]\s*(#.*)?$|[a-z_][a-z0-9_]*\s*=)")


def _written_keys(path: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    table: str | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if header := _HEADER.match(line):
            table = header.group(1)
            if table.startswith("smpp.smsc."):
                table = "smpp.smsc.*"
            found.setdefault(table, set())
        elif table is not None and (key := _KEY.match(line)):
            found[table].add(key.group(1))
    return found


def _sections() -> dict[str, type[Any]]:
    """Every table the code reads and its dataclass, found by walking the settings types."""
    tables: dict[str, type[Any]] = {"gateway": GatewayTable}
    for f in dataclasses.fields(Settings):
        kind = typing.get_type_hints(Settings)[f.name]
        if dataclasses.is_dataclass(kind):
            tables[f.name] = kind  # type: ignore[assignment]
    edge_names = {"email": "email", "smtp": "smtp", "api": "api", "twilio": "providers.twilio"}
    for f in dataclasses.fields(EdgeSettings):
        kind = typing.get_type_hints(EdgeSettings)[f.name]
        args = [a for a in typing.get_args(kind) if a is not type(None)] or [kind]
        if f.name != "smpp":
            tables[edge_names[f.name]] = args[0]
    tables["smpp"] = SmppSettings
    smsc = typing.get_args(typing.get_type_hints(SmppSettings)["smscs"])[0]
    assert SmscSettings is smsc
    tables["smpp.smsc.*"] = smsc
    return tables


def _file_keys(cls: type[Any]) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if not f.metadata.get("gateway.config.derived")}


def test_every_key_the_code_reads_is_in_the_reference_config() -> None:
    """Walk the dataclass of every table (gateway, http, database, cache, pipeline, outbox,
    logging, email, smtp, api, providers.twilio, smpp, smpp.smsc.<name>) and compare its
    keys with those written in the reference files, by the rule above."""
    written: dict[str, set[str]] = {}
    for table, keys in _written_keys(CONFIG).items():
        if not table.startswith("smpp"):
            written.setdefault(table, set()).update(keys)
    for table, keys in _written_keys(SMPP_DEMO).items():
        if table.startswith("smpp") and table != "smpp.senders":
            written.setdefault(table, set()).update(keys)
    expected = {table: _file_keys(cls) for table, cls in _sections().items()}
    assert expected == written


def test_the_reference_config_with_every_table_uncommented_is_valid(tmp_path: Path) -> None:
    """Uncommenting every commented key and table of config/gateway.toml (the documented
    values) gives a configuration `serve` accepts: every documented value is in range."""
    text = CONFIG.read_text(encoding="utf-8")
    lines = [_COMMENTED.sub("", line) for line in text.splitlines()]
    uncommented = "\n".join(lines) + "\n"
    parsed = tomllib.loads(uncommented)
    assert {"email", "smtp", "api", "providers"} <= parsed.keys()
    path = _config(tmp_path, uncommented.replace('"../var/', '"var/'))
    env = {
        "GATEWAY_SECRET_KEY": SECRET,
        "GATEWAY_TWILIO_AUTH_TOKEN": "twilio-token",
    }
    settings = load_settings(path, env)
    edges = check_settings(settings)
    assert (10, 32_768) == (edges.api.max_send_segments, edges.api.max_send_email_chars)
    demo = load_settings(
        SMPP_DEMO, {"GATEWAY_SECRET_KEY": SECRET, "GATEWAY_SMPP_SIM_PASSWORD": "x"}
    )
    assert check_settings(demo).smpp is not None
