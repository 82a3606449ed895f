"""Settings (I/O layer): config/gateway.toml and the environment, parsed once into frozen values.

Secrets and DSNs never live in files: ``GATEWAY_DATABASE_URL``, ``GATEWAY_REDIS_URL``,
``GATEWAY_SECRET_KEY`` and ``GATEWAY_PREVIOUS_SECRET_KEYS`` come from the environment only.
The one exception is the development key: without ``GATEWAY_SECRET_KEY`` (and without
Redis) the key is read from ``[gateway] dev_secret_file``; ``gateway serve`` writes it once
if it does not exist, after a successful start, and never overwrites it (README "Keys and
rotation"). Unknown keys in the TOML file are an error naming the key, so a typo never
silently falls back to a default.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import phonenumbers

from gateway.config_rules import (
    DERIVED,
    Relations,
    at_most,
    listen_port,
    one_of,
    positive,
    problems,
    ranged,
    text,
)
from gateway.errors import ConfigError
from rules.location import valid_zone
from rules.revocation import parse_revoke_all

# Tables owned by protocol edges; each edge parses its own (see ``section``).
EDGE_SECTIONS = frozenset({"smpp", "smtp", "email", "api", "providers"})
_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_MIN_SECRET_BYTES = 32
# The shipped rule table in the source tree this gateway runs from (config/rules).
SOURCE_RULES = Path(__file__).resolve().parents[1] / "config" / "rules"


@dataclass(frozen=True, slots=True)
class GatewayTable:
    """``[gateway]``: where the sender files and the development key are."""

    # Both relative to the configuration file's directory (load_settings).
    senders_dir: str = text("senders", min_len=1)
    dev_secret_file: str = text("var/secret_key", min_len=1)


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """The HTTP listener."""

    host: str = text("127.0.0.1", min_len=1)
    port: int = listen_port(8080)
    # The batch gate reads up to 16 MiB (edges/http/server.py MAX_SIGNED_BODY), the most the
    # application accepts; an inbound webhook of one 1,600-character text needs a few KiB.
    max_body_bytes: int = ranged(64 * 1024, ge=1024, le=16 * 1024 * 1024)
    # Signed requests older or newer than this are refused (replay protection).
    signature_tolerance_seconds: int = ranged(300, ge=1, le=86_400)
    # A request's line and headers must arrive within this (from the connection's start, or
    # from the first byte of a later request on it); else 408 and the connection is closed.
    header_timeout_seconds: float = positive(10.0)
    # A request body must arrive whole within this once its headers are in; else 408.
    body_timeout_seconds: float = positive(60.0)
    # Reverse proxies whose X-Forwarded-For is believed (addresses or networks); evidence
    # records the client they name (gateway/edges/http/client_address.py). Empty: none.
    trusted_proxies: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    """PostgreSQL: the source of truth."""

    schema: str = "consent"
    pool_min: int = ranged(2, ge=0)
    # The two consent-writer tasks keep a connection each (store/writer.py): with fewer than
    # three, nothing else (outbox, gate, API) could ever get one.
    pool_max: int = ranged(10, ge=3, why="two are kept by the consent writer")
    # Used only when GATEWAY_DATABASE_URL is unset: an embedded PostgreSQL (pgserver). A
    # relative path is resolved from the configuration file's directory, never from the
    # current one (load_settings), so every command finds the same cluster.
    embedded_data_dir: str = text("var/pg", min_len=1)
    command_timeout_seconds: float = positive(10.0)
    RELATIONS: ClassVar[Relations] = (at_most("pool_min", "pool_max"),)


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """The consent cache: Redis when GATEWAY_REDIS_URL is set, else in-process."""

    key_prefix: str = text("cg", min_len=1)
    entry_ttl_seconds: int = ranged(86_400, ge=1)
    # A tombstone written before a commit lives this long at most (see store/cache.py).
    tombstone_ttl_seconds: int = ranged(3_600, ge=1)
    operation_timeout_seconds: float = positive(0.5)
    health_interval_seconds: float = positive(0.1)


@dataclass(frozen=True, slots=True)
class PipelineSettings:
    """Inbound events: limits and group commit."""

    max_text_chars: int = ranged(1_600, ge=1)
    max_batch: int = ranged(256, ge=1)
    default_region: str = one_of(
        "US",
        tuple(sorted(phonenumbers.SUPPORTED_REGIONS)),
        why="a region code phonenumbers knows, such as US or GB",
        listed=False,
    )


@dataclass(frozen=True, slots=True)
class OutboxSettings:
    """The transactional outbox worker."""

    poll_interval_seconds: float = positive(0.5)
    batch_size: int = ranged(100, ge=1)
    max_attempts: int = ranged(12, ge=1)
    backoff_base_seconds: float = positive(2.0)
    backoff_max_seconds: float = positive(300.0)
    # A row claimed by an instance that died mid-send is claimed again after this long.
    lease_seconds: float = positive(60.0)
    # /readyz is not ready while an opt-out confirmation has waited longer than this
    # (FCC: one confirmation, presumed reasonable within five minutes); 0: not checked.
    max_opt_out_age_seconds: float = ranged(120.0, ge=0)
    # How often the backlog is sampled for gateway_outbox_backlog / _oldest_seconds.
    monitor_interval_seconds: float = positive(5.0)
    RELATIONS: ClassVar[Relations] = (at_most("backoff_base_seconds", "backoff_max_seconds"),)


@dataclass(frozen=True, slots=True)
class RulesSettings:
    """[rules]: the send rules the gate applies (docs/rules.md)."""

    # false: the gate answers on consent alone, as it did before the rules existed.
    enabled: bool = True
    # The shipped rule table and an operator directory on top of it (stricter only), each
    # relative to the config file. shipped_dir "": the "rules" directory beside the config
    # file if there is one (config/rules; /config/rules in the image), else the one in the
    # source tree the gateway runs from. operator_dir "": no operator rules.
    shipped_dir: str = ""
    operator_dir: str = ""
    # Where email recipients with no recorded time zone are taken to be (the sender's zone).
    default_zone: str = text("America/New_York", min_len=1)
    # 47 CFR 64.1200(a)(10) revoke-all: "auto" (in force from 2027-01-31), "on", or an
    # earlier date "YYYY-MM-DD" (rules/revocation.py).
    revoke_all: str = text("auto", min_len=1)


@dataclass(frozen=True, slots=True)
class LoggingSettings:
    """Structured JSON logs on stderr."""

    level: str = one_of("INFO", ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the gateway needs, parsed and validated once at start-up."""

    config_path: Path
    senders_dir: Path
    http: HttpSettings = field(default_factory=HttpSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)
    outbox: OutboxSettings = field(default_factory=OutboxSettings)
    rules: RulesSettings = field(default_factory=RulesSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    # From the environment.
    database_url: str | None = None
    redis_url: str | None = None
    secret_key: bytes = b""
    # True: no GATEWAY_SECRET_KEY and no development key file yet; ``serve`` writes
    # ``secret_key`` to ``dev_secret_file`` once it has started.
    secret_key_is_ephemeral: bool = False
    dev_secret_file: Path | None = None  # None: GATEWAY_SECRET_KEY is set
    # GATEWAY_PREVIOUS_SECRET_KEYS: older secrets whose signatures and tokens still verify.
    previous_secret_keys: tuple[bytes, ...] = ()
    # Raw TOML tables of the protocol edges ([smpp], [smtp], [email], [api], ...): each edge
    # parses and validates its own table with ``section()`` at start-up.
    edges: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # GATEWAY_* variables, for edges that read secrets such as an SMSC password.
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def embedded_database(self) -> bool:
        """True when no database URL was given and the gateway runs its own PostgreSQL."""
        return self.database_url is None

    def require_embedded_allowed(self) -> None:
        """Refuse the embedded PostgreSQL where ``GATEWAY_ALLOW_EMBEDDED_DATABASE=0``.

        The container image sets it: there the embedded cluster would live in the
        container's own file system, and the ledger would be lost when the container is
        recreated. ``1`` (or unset, outside the image) allows it.
        """
        value = self.env.get("GATEWAY_ALLOW_EMBEDDED_DATABASE", "1")
        if value not in ("0", "1"):
            raise ConfigError("GATEWAY_ALLOW_EMBEDDED_DATABASE: expected 0 or 1")
        if value == "0":
            raise ConfigError(
                "GATEWAY_DATABASE_URL is not set and the embedded PostgreSQL is refused here"
                " (GATEWAY_ALLOW_EMBEDDED_DATABASE=0, as in the container image): its data"
                " would be lost with the container. Set GATEWAY_DATABASE_URL, or"
                " GATEWAY_ALLOW_EMBEDDED_DATABASE=1 with embedded_data_dir on a volume"
            )


_T = TypeVar("_T")


def section(cls: type[_T], raw: object, name: str, source: Path) -> _T:
    """Build one frozen section from its TOML table, refusing unknown keys, wrong types and
    values outside the ranges and relations the section declares (gateway/config_rules.py);
    the error names the file and every key at fault."""
    if raw is None:
        built = cls()
    elif not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: [{name}] must be a table")
    else:
        known = {f.name for f in fields(cls) if not f.metadata.get(DERIVED, False)}  # type: ignore[arg-type]
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if key not in known:
                raise ConfigError(f"{source}: {name}.{key}: unknown key")
            default = getattr(cls(), key)
            expected = type(default)
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if expected is tuple:  # a TOML array of strings, kept immutable
                if not isinstance(value, list | tuple) or not all(
                    isinstance(v, str) for v in value
                ):
                    raise ConfigError(f"{source}: {name}.{key}: expected an array of strings")
                value = tuple(value)
            if not isinstance(value, expected) or isinstance(value, bool) != isinstance(
                default, bool
            ):
                raise ConfigError(
                    f"{source}: {name}.{key}: expected {expected.__name__},"
                    f" got {type(value).__name__}"
                )
            values[key] = value
        built = cls(**values)
    found = problems(cls, built, name)
    if found:
        raise ConfigError(f"{source}: " + "; ".join(found))
    return built


def load_settings(path: Path, env: Mapping[str, str] | None = None) -> Settings:
    """Read ``path`` and the environment into ``Settings``; raise ``ConfigError`` naming the key."""
    env = os.environ if env is None else env
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: configuration file not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc

    allowed = {"gateway", "http", "database", "cache", "pipeline", "outbox", "rules", "logging"}
    for key in raw:
        if key not in allowed and key not in EDGE_SECTIONS:
            raise ConfigError(f"{path}: [{key}]: unknown section")
        if key in EDGE_SECTIONS and not isinstance(raw[key], Mapping):
            raise ConfigError(f"{path}: [{key}] must be a table")
    top = section(GatewayTable, raw.get("gateway"), "gateway", path)
    senders, dev_file = top.senders_dir, top.dev_secret_file
    database = section(DatabaseSettings, raw.get("database"), "database", path)
    if not _SCHEMA_RE.match(database.schema):
        raise ConfigError(f"{path}: database.schema: not a plain lowercase identifier")
    embedded = _relative_to(path, database.embedded_data_dir)
    database = replace(database, embedded_data_dir=str(embedded))

    secret_text = env.get("GATEWAY_SECRET_KEY", "")
    redis_url = env.get("GATEWAY_REDIS_URL") or None
    dev_path: Path | None = None
    if secret_text:
        secret = secret_text.encode()
        if len(secret) < _MIN_SECRET_BYTES:
            raise ConfigError(f"GATEWAY_SECRET_KEY: at least {_MIN_SECRET_BYTES} bytes required")
        ephemeral = False
    elif redis_url is not None:
        # Instances sharing a Redis must derive the same cache keys and verify each other's
        # signatures, so a per-process random key would be wrong there.
        raise ConfigError("GATEWAY_SECRET_KEY is required when GATEWAY_REDIS_URL is set")
    else:
        dev_path = _relative_to(path, dev_file)
        read = read_dev_secret(dev_path)
        ephemeral = read is None
        secret = secrets.token_urlsafe(48).encode() if read is None else read
    previous = _previous_secrets(env.get("GATEWAY_PREVIOUS_SECRET_KEYS", ""))

    http = section(HttpSettings, raw.get("http"), "http", path)
    for entry in http.trusted_proxies:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError as exc:
            raise ConfigError(
                f"{path}: http.trusted_proxies: {entry!r} is not an IP address or network"
            ) from exc

    return Settings(
        config_path=path,
        senders_dir=(path.parent / senders).resolve(),
        http=http,
        database=database,
        cache=section(CacheSettings, raw.get("cache"), "cache", path),
        pipeline=section(PipelineSettings, raw.get("pipeline"), "pipeline", path),
        outbox=section(OutboxSettings, raw.get("outbox"), "outbox", path),
        rules=_rules(section(RulesSettings, raw.get("rules"), "rules", path), path),
        logging=section(LoggingSettings, raw.get("logging"), "logging", path),
        database_url=env.get("GATEWAY_DATABASE_URL") or None,
        redis_url=redis_url,
        secret_key=secret,
        secret_key_is_ephemeral=ephemeral,
        dev_secret_file=dev_path,
        previous_secret_keys=tuple(p for p in previous if p != secret),
        edges={name: raw[name] for name in EDGE_SECTIONS if name in raw},
        env={k: v for k, v in env.items() if k.startswith("GATEWAY_")},
    )


def _rules(rules: RulesSettings, path: Path) -> RulesSettings:
    """``[rules]`` with its directories made absolute from the config file's directory, its
    zone and revoke-all switch checked."""
    if not valid_zone(rules.default_zone):
        raise ConfigError(f"{path}: rules.default_zone: {rules.default_zone!r} is not a time zone")
    try:
        parse_revoke_all(rules.revoke_all)
    except ValueError as exc:
        raise ConfigError(f"{path}: rules.revoke_all: {exc}") from None
    operator = str(_relative_to(path, rules.operator_dir)) if rules.operator_dir else ""
    if rules.shipped_dir:
        shipped = _relative_to(path, rules.shipped_dir)
    else:
        beside = _relative_to(path, "rules")
        shipped = beside if beside.is_dir() else SOURCE_RULES
    if rules.enabled and not shipped.is_dir():
        raise ConfigError(
            f"{path}: rules.shipped_dir: {shipped} is not a directory (the shipped rule table,"
            " config/rules in the source tree)"
        )
    return replace(rules, shipped_dir=str(shipped), operator_dir=operator)


def _relative_to(config: Path, value: str) -> Path:
    """``value`` as an absolute path; a relative one is taken from the config file's
    directory, never the current one, as written (``..`` is not resolved through a symbolic
    link, so a symlinked config folder finds the files beside the link)."""
    given = Path(value).expanduser()
    return given if given.is_absolute() else Path(os.path.abspath(config.parent / given))


def read_dev_secret(path: Path) -> bytes | None:
    """The development key in ``path``; None if there is none yet.

    A file that exists but cannot be read, or holds fewer than 32 bytes, is a ConfigError:
    starting with another key would turn every issued link into 403, every signed request
    into 401, and stop the suppression list from matching.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(
            f"{path}: the development key cannot be read ({exc.strerror}); fix its permissions"
            " or set GATEWAY_SECRET_KEY"
        ) from exc
    key = data.strip()
    if len(key) < _MIN_SECRET_BYTES:
        raise ConfigError(
            f"{path}: the development key holds {len(key)} bytes, at least {_MIN_SECRET_BYTES}"
            " are required; restore it, or set GATEWAY_SECRET_KEY"
        )
    return key


def _previous_secrets(raw: str) -> list[bytes]:
    """GATEWAY_PREVIOUS_SECRET_KEYS: comma-separated older secrets, newest first."""
    found = []
    for item in raw.split(","):
        value = item.strip().encode()
        if not value:
            continue
        if len(value) < _MIN_SECRET_BYTES:
            raise ConfigError(
                f"GATEWAY_PREVIOUS_SECRET_KEYS: each secret needs {_MIN_SECRET_BYTES} bytes"
            )
        found.append(value)
    return found
