"""``[email]`` and ``[smtp]``: the settings every email part reads, parsed and checked once.

The link service (gateway/email/links.py), the relay sender (gateway/senders/email.py) and the
inbound SMTP edge (gateway/edges/smtp/) all take these values; gateway/app/config_check.py
checks them with every other table before anything starts.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from gateway.config_rules import Relations, at_most, listen_port, peer_port, positive, ranged, text
from gateway.errors import ConfigError
from gateway.settings import Settings, section


@dataclass(frozen=True, slots=True)
class EmailSettings:
    """``[email]``: unsubscribe links, the relay for confirmation mail, DKIM, CAN-SPAM details."""

    # Root of the one-click URLs put in List-Unsubscribe; RFC 8058 section 3.1 wants HTTPS.
    public_base_url: str = "http://127.0.0.1:8080"
    # Domain of the mailto unsubscribe address (unsubscribe+TOKEN@domain); empty: no mailto.
    unsubscribe_domain: str = ""
    unsubscribe_local: str = "unsubscribe"
    # Envelope sender of confirmations, so bounces come back to our SMTP edge.
    bounce_address: str = ""
    # VERP: each confirmation's envelope sender is bounce_address with a signed outbox id in
    # its local part (bounces+TOKEN@domain), so a DSN names the message it is about.
    bounce_verp: bool = True
    # CAN-SPAM (15 U.S.C. 7704(a)(3)) wants the mechanism to work 30 days after sending at
    # least; ten years is the most a link may live (its expiry is three bytes of hours).
    token_ttl_days: int = ranged(60, ge=30, le=3_650, why="CAN-SPAM: 30 days at least")
    relay_host: str = ""  # empty: confirmation mail stays queued in the outbox
    relay_port: int = peer_port(25)
    relay_starttls: bool = False
    relay_timeout_seconds: float = positive(30.0)
    relay_username: str = ""  # the password comes from GATEWAY_RELAY_PASSWORD
    dkim_domain: str = ""  # with dkim_selector: sign with GATEWAY_DKIM_PRIVATE_KEY(_FILE)
    dkim_selector: str = ""
    postal_address: str = ""  # CAN-SPAM: a valid physical postal address in every mail


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    """``[smtp]``: the inbound SMTP server (unsubscribe mail, replies, ARF, DSNs)."""

    host: str = text("127.0.0.1", min_len=1)
    port: int = listen_port(2525)
    hostname: str = ""  # the name in the banner and EHLO answer; empty: the machine's FQDN
    domains: tuple[str, ...] = ()  # mail for any other domain gets 550 at RCPT
    # SIZE; bigger messages get 552 (RFC 5321 4.5.3.1.7), which must leave room for a report.
    max_message_bytes: int = ranged(1_048_576, ge=1024)
    max_connections: int = ranged(200, ge=1)
    # One address may hold this many of them; more get 421 (Postfix caps a client at 50 of
    # its 100 processes): one client's idle sockets cannot lock every other client out.
    max_connections_per_client: int = ranged(20, ge=1)
    # A silent client is told 421 4.4.2 and closed after this long: RFC 5321 section
    # 4.5.3.2.7 asks a server to wait 5 minutes for a command, but before MAIL nothing of
    # the client's is at stake, so a socket that only holds a slot is cut sooner.
    idle_seconds: float = positive(300.0)
    idle_before_mail_seconds: float = positive(30.0)
    max_recipients: int = ranged(50, ge=1)  # RFC 5321 4.5.3.1.8 asks for 100 at least per mail
    tls_cert_file: str = ""  # with tls_key_file: offer STARTTLS (RFC 3207)
    tls_key_file: str = ""
    # Reporters whose complaints and bounces are believed without a token of ours, when the
    # report authenticates as theirs (DKIM pass with that d=, or SPF pass for the envelope).
    feedback_loops: tuple[str, ...] = ()
    dns_servers: tuple[str, ...] = ()  # for SPF, DKIM and DMARC; empty: /etc/resolv.conf
    dns_port: int = peer_port(53)
    dns_timeout_seconds: float = positive(5.0)  # one lookup
    auth_timeout_seconds: float = positive(10.0)  # the whole authentication of one mail
    RELATIONS: ClassVar[Relations] = (
        at_most("dns_timeout_seconds", "auth_timeout_seconds", why="one lookup is part of it"),
        at_most("idle_before_mail_seconds", "idle_seconds"),
    )


def _with_tuples(raw: object) -> object:
    if isinstance(raw, Mapping):
        return {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    return raw


def email_settings(settings: Settings) -> EmailSettings:
    """Parse and check ``[email]`` (defaults when absent)."""
    parsed = section(EmailSettings, settings.edges.get("email"), "email", settings.config_path)
    if not parsed.public_base_url.startswith(("https://", "http://")):
        raise ConfigError(f"{settings.config_path}: email.public_base_url: not an http(s) URL")
    for key in ("public_base_url", "unsubscribe_domain", "unsubscribe_local", "bounce_address"):
        # They go into List-Unsubscribe and the envelope as they are: ASCII, or no URI.
        if not getattr(parsed, key).isascii() or " " in getattr(parsed, key):
            raise ConfigError(f"{settings.config_path}: email.{key}: ASCII without spaces")
    if bool(parsed.dkim_domain) != bool(parsed.dkim_selector):
        raise ConfigError(
            f"{settings.config_path}: email.dkim_domain and dkim_selector go together"
        )
    return parsed


def smtp_settings(settings: Settings) -> SmtpSettings | None:
    """Parse ``[smtp]``; None when the section is absent (no SMTP server)."""
    raw = settings.edges.get("smtp")
    if raw is None:
        return None
    parsed = section(SmtpSettings, _with_tuples(raw), "smtp", settings.config_path)
    if not parsed.domains or not all(isinstance(d, str) and d for d in parsed.domains):
        raise ConfigError(f"{settings.config_path}: smtp.domains: a list of domains is required")
    if bool(parsed.tls_cert_file) != bool(parsed.tls_key_file):
        raise ConfigError(
            f"{settings.config_path}: smtp.tls_cert_file and tls_key_file go together"
        )
    for name in (parsed.tls_cert_file, parsed.tls_key_file):
        if name and not Path(name).is_file():
            raise ConfigError(f"{settings.config_path}: smtp: {name}: no such file")
    for key in ("feedback_loops", "dns_servers"):
        values = getattr(parsed, key)
        if not all(isinstance(v, str) and v and v.isascii() and " " not in v for v in values):
            raise ConfigError(f"{settings.config_path}: smtp.{key}: a list of names or addresses")
    for address in parsed.dns_servers:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise ConfigError(
                f"{settings.config_path}: smtp.dns_servers: {address}: not an IP address"
            ) from None
    return dataclasses.replace(
        parsed, feedback_loops=tuple(d.lower().rstrip(".") for d in parsed.feedback_loops)
    )
