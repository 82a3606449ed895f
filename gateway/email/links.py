"""The email link service (no I/O): token targets, one-click URLs, RFC 8058 headers, VERP.

Shared by the HTTP one-click edge, the inbound SMTP edge and the confirmation-mail sender:
they all turn a (list, recipient, program) into a token and back. The token payload names the
list by a 4-byte digest (resolved against the configured email lists), so links stay short
enough to sit in the local part of a mailto address (``unsubscribe+TOKEN@domain``).

The email lists are read from the live catalog registry (gateway/catalogs.py): a list the
admin API adds or changes is served by links, one-click pages and inbound mail at once, on
every instance; the indexes below are rebuilt when the registry's version moves.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

from gateway.addresses import parse_email
from gateway.catalogs import CatalogRegistry
from gateway.email.settings import EmailSettings, email_settings
from gateway.errors import UnknownSender
from gateway.security.tokens import MalformedToken, TokenCodec, TokenError, TokenKeys
from gateway.settings import Settings
from keywords.catalog import SenderCatalog
from keywords.model import Channel

PURPOSE = "unsubscribe"
VERP_PURPOSE = "verp"  # tokens in the envelope sender's local part name an outbox row
ONE_CLICK_VALUE = "List-Unsubscribe=One-Click"  # RFC 8058 section 3.1
_LIST_DIGEST = 4
_TOKEN_IN_TEXT = re.compile(r"(?<![A-Za-z0-9])([A-Za-z0-9]{1,8}\.[A-Za-z0-9_\-]{24,400})")


@dataclass(frozen=True, slots=True)
class Target:
    """Who leaves what: the recipient, the list (an email sender), optionally one program."""

    list_id: str
    address: str
    program: str | None = None


@dataclass(frozen=True, slots=True)
class _ListIndex:
    """The email lists of one registry version, and the lookups links and mail need."""

    version: int
    lists: Mapping[str, SenderCatalog]
    by_digest: Mapping[bytes, str]
    by_lower: Mapping[str, str]  # a list id as mail may spell it -> the list id
    by_domain: Mapping[str, tuple[str, ...]]  # lower-case domain -> its lists


class UnsubscribeLinks:
    """Makes and reads unsubscribe tokens, links and headers for the configured email lists."""

    def __init__(
        self, codec: TokenCodec, settings: EmailSettings, catalogs: Mapping[str, SenderCatalog]
    ) -> None:
        self.codec = codec
        self.settings = settings
        self._catalogs = CatalogRegistry.of(catalogs)
        self._ttl = settings.token_ttl_days * 86_400
        self._index = self._build_index()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        catalogs: Mapping[str, SenderCatalog],
        codec: TokenCodec | None = None,
    ) -> UnsubscribeLinks:
        """Build from the gateway settings; ``codec`` is the instance's one token codec
        (built from the environment's keys when not given)."""
        if codec is None:
            keys = TokenKeys.from_env(
                settings.env, settings.secret_key, settings.previous_secret_keys
            )
            codec = TokenCodec(keys)
        return cls(codec, email_settings(settings), catalogs)

    def _build_index(self) -> _ListIndex:
        registry = self._catalogs
        lists = {s: c for s, c in registry.items() if c.channel is Channel.EMAIL}
        by_domain: dict[str, tuple[str, ...]] = {}
        for list_id in lists:
            domain = list_id.rpartition("@")[2].lower()
            by_domain[domain] = (*by_domain.get(domain, ()), list_id)
        return _ListIndex(
            version=registry.version,
            lists=lists,
            by_digest={self._digest(s): s for s in lists},
            by_lower={s.lower(): s for s in lists},
            by_domain=by_domain,
        )

    def _current(self) -> _ListIndex:
        index = self._index
        if index.version != self._catalogs.version:
            index = self._index = self._build_index()
        return index

    @property
    def lists(self) -> Mapping[str, SenderCatalog]:
        """The email lists now: list id -> catalog."""
        return self._current().lists

    def list_id(self, spelled: str) -> str | None:
        """The list id that ``spelled`` names, whatever its case; None if none."""
        return self._current().by_lower.get(spelled.lower())

    def lists_in(self, domain: str) -> tuple[str, ...]:
        """The list ids under ``domain`` (any case)."""
        return self._current().by_domain.get(domain.lower(), ())

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
        return self.codec.issue(payload, PURPOSE, ttl_seconds=self._ttl)

    def target(self, token: str) -> Target:
        """The target a token names; raise ``TokenError`` (or ``UnknownSender``) otherwise."""
        payload = self.codec.verify(token, PURPOSE)
        if len(payload) < _LIST_DIGEST + 1:
            raise MalformedToken("token payload too short")
        list_id = self._current().by_digest.get(payload[:_LIST_DIGEST])
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
        token = self.codec.issue(outbox_id.to_bytes(8, "big"), VERP_PURPOSE, ttl_seconds=self._ttl)
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
