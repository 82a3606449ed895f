"""SMPP edge settings (I/O layer): the ``[smpp]`` table of gateway.toml, parsed once, frozen.

```toml
[smpp]
default_alphabet = "gsm0338"          # how data_coding 0 is read: gsm0338 | latin1 | ascii
reassembly_timeout_seconds = 60.0     # no new part for this long: take a long text as it is
dedupe_window_seconds = 600.0

[smpp.senders]                         # each sender names the SMSC(s) that carry it
"12345" = ["carrier_a"]

[smpp.smsc.carrier_a]
host = "smsc.example.net"
port = 2775
system_id = "acme"                     # password: env GATEWAY_SMPP_CARRIER_A_PASSWORD
bind = "transceiver"                   # or "receiver_transmitter" (two binds)
```
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from gateway.config_rules import (
    DERIVED,
    Relations,
    at_most,
    derived,
    one_of,
    peer_port,
    positive,
    ranged,
    text,
)
from gateway.errors import ConfigError
from gateway.settings import section

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
BIND_MODES = ("transceiver", "receiver_transmitter")
ALPHABETS = ("gsm0338", "latin1", "ascii")
NPI_VALUES = (0, 1, 3, 4, 6, 8, 9, 10, 14, 18)  # SMPP 3.4 section 5.2.6


@dataclass(frozen=True, slots=True)
class SmscSettings:
    """One SMSC account (an ESME bind, or a receiver and a transmitter bind)."""

    host: str = text("127.0.0.1", min_len=1)
    port: int = peer_port(2775)
    # SMPP 3.4 section 4.1.1: system_id is a C-Octet String of at most 16 octets and
    # system_type of at most 13, the terminating NUL included.
    system_id: str = text("", min_len=1, max_len=15, why="SMPP 3.4 section 4.1.1")
    system_type: str = text("", max_len=12, why="SMPP 3.4 section 4.1.1")
    bind: str = one_of("transceiver", BIND_MODES)
    tls: bool = False
    tls_verify: bool = True
    tls_ca_file: str = ""
    # SMPP 3.4 §4.11: enquire_link keeps the bind alive and detects a dead peer: a request
    # unanswered for response_timeout_seconds drops the connection.
    enquire_link_seconds: float = positive(30.0)
    response_timeout_seconds: float = positive(10.0)
    # Outstanding requests we send before waiting for responses (SMPP 3.4 §2.7 "windowing").
    window: int = ranged(10, ge=1, le=1_000)
    submit_rate: float = positive(100.0)  # submit_sm per second per bind (most allow 100-150)
    throttle_backoff_seconds: float = positive(0.5)  # first pause after ESME_RTHROTTLED / RMSGQFUL
    throttle_backoff_max_seconds: float = positive(30.0)
    reconnect_min_seconds: float = positive(1.0)
    reconnect_max_seconds: float = positive(60.0)
    registered_delivery: bool = True  # ask for delivery receipts (SMPP 3.4 §5.2.17)
    # SMPP 3.4 §5.2.5 (type of number, 0-6) and §5.2.6 (numbering plan indicator).
    source_ton: int = ranged(3, ge=0, le=6, why="SMPP 3.4 section 5.2.5")  # network specific
    source_npi: int = one_of(0, NPI_VALUES, why="SMPP 3.4 section 5.2.6")
    dest_ton: int = ranged(1, ge=0, le=6, why="SMPP 3.4 section 5.2.5")  # international
    dest_npi: int = one_of(1, NPI_VALUES, why="SMPP 3.4 section 5.2.6")  # E.164
    # Name and secret, filled from the section name and the environment, not from the file.
    name: str = derived("")
    password: str = derived("")
    RELATIONS: ClassVar[Relations] = (
        at_most("throttle_backoff_seconds", "throttle_backoff_max_seconds"),
        at_most("reconnect_min_seconds", "reconnect_max_seconds"),
    )


@dataclass(frozen=True, slots=True)
class SmppSettings:
    """The SMPP edge."""

    default_alphabet: str = one_of("gsm0338", ALPHABETS)
    # A long text none of whose parts arrived for this long is taken with the parts it has
    # (gateway/edges/smpp/reassembly.py); after a restart, the sweep's first pass waits as long.
    reassembly_timeout_seconds: float = positive(60.0)
    # Redeliveries carry no SMSC message id (deliver_sm has none in 3.4), so a redelivered
    # text is recognised by source, destination and body within this window (README,
    # "Exactly once"); a long text's parts are remembered as long after it was taken.
    dedupe_window_seconds: float = positive(600.0)
    shutdown_timeout_seconds: float = positive(5.0)
    # Filled from [smpp.smsc.<name>] and [smpp.senders], not keys of [smpp] itself.
    smscs: tuple[SmscSettings, ...] = derived(())
    routes: Mapping[str, tuple[str, ...]] = field(default_factory=dict, metadata={DERIVED: True})


def password_variable(name: str) -> str:
    """The environment variable holding an SMSC's password."""
    return f"GATEWAY_SMPP_{name.upper()}_PASSWORD"


def parse_smpp(raw: Mapping[str, Any], env: Mapping[str, str], source: Path) -> SmppSettings:
    """Parse and validate the ``[smpp]`` table; raise ``ConfigError`` naming the key."""
    table = dict(raw)
    smsc_tables = table.pop("smsc", {})
    route_table = table.pop("senders", {})
    if not isinstance(smsc_tables, Mapping) or not isinstance(route_table, Mapping):
        raise ConfigError(f"{source}: [smpp.smsc] and [smpp.senders] must be tables")
    top = section(SmppSettings, table, "smpp", source)
    smscs = []
    for name, values in smsc_tables.items():
        where = f"smpp.smsc.{name}"
        if not _NAME_RE.match(name):
            raise ConfigError(f"{source}: [{where}]: names are lowercase letters, digits, _")
        if not isinstance(values, Mapping):
            raise ConfigError(f"{source}: [{where}] must be a table")
        smsc = section(SmscSettings, values, where, source)
        password = env.get(password_variable(name))
        if password is None:
            raise ConfigError(f"{password_variable(name)}: the password of SMSC {name!r}")
        smscs.append(replace(smsc, name=name, password=password))
    known = {s.name for s in smscs}
    routes: dict[str, tuple[str, ...]] = {}
    for sender, names in route_table.items():
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"{source}: smpp.senders.{sender}: a list of SMSC names")
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ConfigError(f"{source}: smpp.senders.{sender}: unknown SMSC {unknown[0]!r}")
        routes[str(sender)] = tuple(names)
    return replace(top, smscs=tuple(smscs), routes=routes)
