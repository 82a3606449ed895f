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
from typing import Any

from gateway.errors import ConfigError
from gateway.settings import section

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
BIND_MODES = ("transceiver", "receiver_transmitter")
ALPHABETS = ("gsm0338", "latin1", "ascii")


@dataclass(frozen=True, slots=True)
class SmscSettings:
    """One SMSC account (an ESME bind, or a receiver and a transmitter bind)."""

    host: str = "127.0.0.1"
    port: int = 2775
    system_id: str = ""
    system_type: str = ""
    bind: str = "transceiver"
    tls: bool = False
    tls_verify: bool = True
    tls_ca_file: str = ""
    # SMPP 3.4 §4.11: enquire_link keeps the bind alive and detects a dead peer: a request
    # unanswered for response_timeout_seconds drops the connection.
    enquire_link_seconds: float = 30.0
    response_timeout_seconds: float = 10.0
    # Outstanding requests we send before waiting for responses (SMPP 3.4 §2.7 "windowing").
    window: int = 10
    submit_rate: float = 100.0  # submit_sm per second per bind (most SMSCs allow 100-150)
    throttle_backoff_seconds: float = 0.5  # first pause after ESME_RTHROTTLED / RMSGQFUL
    throttle_backoff_max_seconds: float = 30.0
    reconnect_min_seconds: float = 1.0
    reconnect_max_seconds: float = 60.0
    registered_delivery: bool = True  # ask for delivery receipts (SMPP 3.4 §5.2.17)
    source_ton: int = 3  # short code: network specific (SMPP 3.4 §5.2.5)
    source_npi: int = 0
    dest_ton: int = 1  # international
    dest_npi: int = 1  # E.164
    # Name and secret, filled from the section name and the environment, not from the file.
    name: str = ""
    password: str = ""


@dataclass(frozen=True, slots=True)
class SmppSettings:
    """The SMPP edge."""

    default_alphabet: str = "gsm0338"
    # A long text none of whose parts arrived for this long is taken with the parts it has
    # (gateway/edges/smpp/reassembly.py); after a restart, the sweep's first pass waits as long.
    reassembly_timeout_seconds: float = 60.0
    # Redeliveries carry no SMSC message id (deliver_sm has none in 3.4), so a redelivered
    # text is recognised by source, destination and body within this window (README,
    # "Exactly once"); a long text's parts are remembered as long after it was taken.
    dedupe_window_seconds: float = 600.0
    shutdown_timeout_seconds: float = 5.0
    smscs: tuple[SmscSettings, ...] = ()
    routes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


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
    for key in ("smscs", "routes"):  # filled from [smpp.smsc.*] and [smpp.senders] only
        if key in table:
            raise ConfigError(f"{source}: smpp.{key}: unknown key")
    top = section(SmppSettings, table, "smpp", source)
    if top.default_alphabet not in ALPHABETS:
        raise ConfigError(f"{source}: smpp.default_alphabet: one of {', '.join(ALPHABETS)}")
    smscs = []
    for name, values in smsc_tables.items():
        where = f"smpp.smsc.{name}"
        if not _NAME_RE.match(name):
            raise ConfigError(f"{source}: [{where}]: names are lowercase letters, digits, _")
        if not isinstance(values, Mapping) or {"name", "password"} & set(values):
            raise ConfigError(f"{source}: [{where}]: a table without name/password keys")
        smsc = section(SmscSettings, values, where, source)
        if smsc.bind not in BIND_MODES:
            raise ConfigError(f"{source}: {where}.bind: one of {', '.join(BIND_MODES)}")
        if not smsc.system_id or smsc.window < 1 or smsc.submit_rate <= 0:
            raise ConfigError(f"{source}: [{where}]: system_id, window >= 1, submit_rate > 0")
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
