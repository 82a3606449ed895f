"""The whole configuration, checked (I/O layer): every table parsed as ``serve`` parses it.

``load_settings`` reads the gateway's own tables; the protocol edges parse theirs when they
start. ``check_settings`` parses them all up front, with their ranges and relations
(gateway/config_rules.py), and the relations between tables, so that ``Gateway`` refuses a
bad value before it starts anything and ``gateway check-config`` finds everything ``serve``
would refuse. It touches no database and no network.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.app.api_wiring import ApiSettings, TwilioSettings, parse_api
from gateway.edges.smpp.config import SmppSettings, parse_smpp
from gateway.email.settings import EmailSettings, SmtpSettings, email_settings, smtp_settings
from gateway.errors import ConfigError
from gateway.senders.email import dkim_key_from_env
from gateway.settings import Settings


@dataclass(frozen=True, slots=True)
class EdgeSettings:
    """Every protocol edge's table, parsed and checked."""

    smpp: SmppSettings | None
    email: EmailSettings
    smtp: SmtpSettings | None
    api: ApiSettings
    twilio: TwilioSettings


def check_settings(settings: Settings) -> EdgeSettings:
    """Parse every edge table; raise ``ConfigError`` naming the file and each key at fault."""
    smpp = (
        parse_smpp(settings.edges["smpp"], settings.env, settings.config_path)
        if "smpp" in settings.edges
        else None
    )
    email = email_settings(settings)
    smtp = smtp_settings(settings)
    api, twilio = parse_api(settings)
    edges = EdgeSettings(smpp=smpp, email=email, smtp=smtp, api=api, twilio=twilio)
    if edges.email.dkim_domain:
        dkim_key_from_env(settings.env)  # an unreadable key file is refused here, not later
    found = _relations(settings, edges)
    if found:
        raise ConfigError(f"{settings.config_path}: " + "; ".join(found))
    return edges


def _relations(settings: Settings, edges: EdgeSettings) -> list[str]:
    """What holds between tables."""
    found: list[str] = []
    lease = settings.outbox.lease_seconds
    # The outbox sends a claimed batch concurrently and outside any transaction: a send that
    # is still running when its lease ends is claimed by another worker and sent twice.
    sends = []
    if edges.email.relay_host:
        sends.append(("email.relay_timeout_seconds", edges.email.relay_timeout_seconds))
    if edges.twilio.senders:
        sends.append(("providers.twilio.timeout_seconds", edges.twilio.timeout_seconds))
    for key, timeout in sends:
        if lease <= timeout:
            found.append(
                f"outbox.lease_seconds: must be greater than {key} ({timeout!r}: a send still"
                f" running when its lease ends is sent again), got {lease!r}"
            )
    smtp = edges.smtp
    if (
        smtp is not None
        and smtp.port != 0
        and smtp.port == settings.http.port
        and smtp.host == settings.http.host
    ):
        found.append(f"smtp.port: must differ from http.port on the same host, got {smtp.port}")
    return found
