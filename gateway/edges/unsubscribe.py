"""Unsubscribe links (I/O layer helper, no I/O): email settings, token targets, RFC 8058 headers.

Shared by the HTTP one-click edge, the inbound SMTP edge and the confirmation-mail sender:
they all turn a (list, recipient, program) into a token and back. The token payload names the
list by a 4-byte digest (resolved against the configured email lists), so links stay short
enough to sit in the local part of a mailto address (``unsubscribe+TOKEN@domain``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar
from urllib.parse import quote

from gateway.addresses import parse_email
from gateway.config_rules import Relations, at_most, listen_port, peer_port, positive, ranged, text
from gateway.errors import ConfigError, UnknownSender
from gateway.settings import Settings, section
from gateway.tokens import MalformedToken, TokenCodec, TokenError, TokenKeys
from keywords.catalog import SenderCatalog
from keywords.model import Channel

PURPOSE = "unsubscribe"
VERP_PURPOSE = "verp"  # tokens in the envelope sender's local part name an outbox row
ONE_CLICK_VALUE = "List-Unsubscribe=One-Click"  # RFC 8058 section 3.1
_LIST_DIGEST = 4
_TOKEN_IN_TEXT = re.compile(r"(?<![A-Za-z0-9])([A-Za-z0-9]{1,8}\.[A-Za-z0-9_\-]{24,400})")


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


@dataclass(frozen=True, slots=True)
class Target:
    """Who leaves what: the recipient, the list (an email sender), optionally one program."""

    list_id: str
    address: str
    program: str | None = None


class UnsubscribeLinks:
    """Makes and reads unsubscribe tokens, links and headers for the configured email lists."""

    def __init__(
        self, codec: TokenCodec, settings: EmailSettings, catalogs: Mapping[str, SenderCatalog]
    ) -> None:
        self.codec = codec
        self.settings = settings
        self.lists = {s: c for s, c in catalogs.items() if c.channel is Channel.EMAIL}
        self._by_digest = {self._digest(s): s for s in self.lists}

    @classmethod
    def from_settings(
        cls, settings: Settings, catalogs: Mapping[str, SenderCatalog]
    ) -> UnsubscribeLinks:
        """Build from the gateway settings (keys from the environment)."""
        parsed = email_settings(settings)
        codec = TokenCodec(
            TokenKeys.from_env(settings.env, settings.secret_key, settings.previous_secret_keys),
            default_ttl_seconds=parsed.token_ttl_days * 86_400,
        )
        return cls(codec, parsed, catalogs)

    @staticmethod
    def _digest(list_id: str) -> bytes:
        return hashlib.sha256(list_id.encode()).digest()[:_LIST_DIGEST]

    def token(self, target: Target) -> str:
        """The token for ``target``; ``UnknownSender`` unless the list and program exist."""
        catalog = self.lists.get(target.list_id)
        if catalog is None:
            raise UnknownSender("not a configured email list")
        if target.program is not None and not catalog.has_program(target.program):
            raise UnknownSender("the list has no such program")
        program = (target.program or "").encode()
        payload = (
            self._digest(target.list_id)
            + bytes([len(program)])
            + program
            + parse_email(target.address).send.encode()  # as issued; the key is derived
        )
        return self.codec.issue(payload, PURPOSE)

    def target(self, token: str) -> Target:
        """The target a token names; raise ``TokenError`` (or ``UnknownSender``) otherwise."""
        payload = self.codec.verify(token, PURPOSE)
        if len(payload) < _LIST_DIGEST + 1:
            raise MalformedToken("token payload too short")
        list_id = self._by_digest.get(payload[:_LIST_DIGEST])
        if list_id is None:
            raise UnknownSender("the token's list is no longer configured")
        size = payload[_LIST_DIGEST]
        program = payload[_LIST_DIGEST + 1 : _LIST_DIGEST + 1 + size].decode() or None
        address = payload[_LIST_DIGEST + 1 + size :].decode()
        return Target(list_id, address, program)

    def url(self, token: str) -> str:
        """The one-click HTTPS URL (RFC 8058 section 3.1: the URI alone identifies recipient)."""
        return f"{self.settings.public_base_url.rstrip('/')}/u/{token}"

    def mailto(self, token: str) -> str | None:
        """``unsubscribe+TOKEN@domain``, or None without an unsubscribe domain."""
        s = self.settings
        return (
            f"{s.unsubscribe_local}+{token}@{s.unsubscribe_domain}"
            if s.unsubscribe_domain
            else None
        )

    def unsubscribe_uris(self, target: Target) -> list[str]:
        """The ``List-Unsubscribe`` URIs, each in angle brackets: HTTPS first (RFC 8058
        section 3.1), then mailto (RFC 2369 section 2: the client picks the first it can use).

        Both are ASCII: the token is base64url and the mailto address is percent-encoded
        (RFC 6068), so the header never needs an encoded word (RFC 2047 section 5 allows
        none inside a URI, and mail clients offer no unsubscribe button on one)."""
        token = self.token(target)
        values = [f"<{self.url(token)}>"]
        mailto = self.mailto(token)
        if mailto is not None:
            values.append(f"<mailto:{quote(mailto, safe='@+.')}?subject=unsubscribe>")
        return values

    def headers(self, target: Target) -> dict[str, str]:
        """``List-Unsubscribe`` (HTTPS, then mailto) and ``List-Unsubscribe-Post`` (RFC 8058)."""
        return {
            "List-Unsubscribe": ", ".join(self.unsubscribe_uris(target)),
            "List-Unsubscribe-Post": ONE_CLICK_VALUE,
        }

    def bounce_address(self, outbox_id: int) -> str:
        """The envelope sender for outbox row ``outbox_id`` ('' without a bounce address).

        With ``bounce_verp`` it is ``local+TOKEN@domain``, TOKEN naming the row (41
        characters, inside the 64 of RFC 5321 section 4.5.3.1.1): a DSN comes back to the
        address of the one message and recipient it is about, whatever it says inside.
        """
        s = self.settings
        if not s.bounce_address or not s.bounce_verp:
            return s.bounce_address
        local, _, domain = s.bounce_address.rpartition("@")
        token = self.codec.issue(outbox_id.to_bytes(8, "big"), VERP_PURPOSE)
        return f"{local}+{token}@{domain}"

    def bounced_outbox_id(self, address: str) -> int | None:
        """The outbox id in a VERP bounce address we issued; None for any other address."""
        bounce = self.settings.bounce_address
        if not bounce:
            return None
        local, _, domain = address.rpartition("@")
        base, plus, token = local.partition("+")
        our_local, _, our_domain = bounce.rpartition("@")
        if not plus or base.lower() != our_local.lower() or domain.lower() != our_domain.lower():
            return None
        try:
            payload = self.codec.verify(token, VERP_PURPOSE)
        except TokenError:
            return None
        return int.from_bytes(payload, "big") if len(payload) == 8 else None

    def message_id(self, target: Target, domain: str | None = None) -> str:
        """A Message-ID that carries the token, so a reply's In-Reply-To finds the list."""
        host = domain or self.settings.unsubscribe_domain or "localhost"
        return f"<u.{self.token(target)}.{secrets.token_hex(6)}@{host}>"

    def find_targets(self, *values: str | None) -> list[Target]:
        """Every valid target whose token appears in the given header values or addresses."""
        found: list[Target] = []
        for value in values:
            for candidate in _TOKEN_IN_TEXT.findall(value or ""):
                for token in (candidate, candidate.rsplit(".", 1)[0]):
                    try:
                        target = self.target(token)
                    except (TokenError, UnknownSender, UnicodeDecodeError):
                        continue
                    if target not in found:
                        found.append(target)
                    break
        return found
