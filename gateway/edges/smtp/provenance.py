"""Whether a complaint or bounce is about mail we sent (I/O layer helper): ties and reporters.

Anyone can mail us a well-formed ARF report (RFC 5965) or DSN (RFC 3464) naming anyone. A
report changes something only when it is *tied* to a message we sent, and then only for that
message's own recipient:

- ``verp``: it came to a VERP bounce address we issued (``bounces+TOKEN@``), which names one
  outbox row, hence one message to one recipient;
- ``token``: the returned message, its headers or its text carry an unsubscribe token of ours
  (List-Unsubscribe, our Message-IDs ``<c{id}.{token}@...>`` and ``<u.{token}...>``): the token
  is authenticated (``gateway/security/tokens.py``) and names its recipient and list;
- ``message_id``: the returned Message-ID is one the outbox recorded as sent
  (``provider_ref``), which still holds once the token in it has expired;
- ``dkim``: the returned message carries our own valid DKIM signature over From and To. Our
  key needs no DNS (we hold it). A headers-only return (``text/rfc822-headers``, as most
  feedback loops send) cannot have its body hash checked, so it never counts as signed by us:
  it is tied only by a token or a Message-ID.

A report with no tie is believed only from a configured feedback loop (``[smtp]
feedback_loops``) whose report authenticates as that domain: DKIM pass with that ``d=`` (or a
subdomain), or SPF pass for an envelope sender in it. A ``From`` or ``MAIL FROM`` alone proves
nothing. Everything else is kept as an unverified report and changes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from gateway.addresses import normalize_email
from gateway.edges.smtp import parse
from gateway.edges.smtp.mailauth import AuthResults, OwnKey
from gateway.email.links import Target, UnsubscribeLinks
from gateway.errors import BadInput

# EmailSender's Message-ID: <c{outbox id}.{token}@{domain}>.
_SENT_MESSAGE_ID = re.compile(r"<c(\d{1,18})\.[A-Za-z0-9_.\-]+@[A-Za-z0-9.\-]+>")
_MAX_LOOKUPS = 5  # outbox rows looked up for one report


class Sent(Protocol):
    """An email the outbox sent (``gateway.store.email_reports.SentMail``)."""

    @property
    def sender(self) -> str:
        """The list it came from."""

    @property
    def recipient(self) -> str:
        """Whom it went to."""

    @property
    def provider_ref(self) -> str:
        """The Message-ID it left with."""


class SentLookup(Protocol):
    """What provenance needs of the store: an outbox row by id, once sent."""

    async def sent_mail(self, outbox_id: int) -> Sent | None:
        """The sent email row, or None."""


@dataclass(frozen=True, slots=True)
class Tie:
    """A report is about ``target``'s mail, as shown by ``by``."""

    target: Target
    by: str  # verp, token, message_id, dkim


def same_address(a: str, b: str) -> bool:
    """Two addresses are one mailbox (normalized as contacts are; else compared as text)."""
    return normal_address(a) == normal_address(b)


def normal_address(address: str) -> str:
    """``address`` normalized as contacts are; lower-cased when it does not normalize."""
    try:
        return normalize_email(address)
    except BadInput:
        return address.strip().lower()


class Provenance:
    """Finds the ties of a report and decides whether its reporter is a trusted one."""

    def __init__(
        self,
        links: UnsubscribeLinks,
        sent: SentLookup,
        *,
        own_key: OwnKey | None,
        feedback_loops: tuple[str, ...],
    ) -> None:
        self._links = links
        self._sent = sent
        self._own_key = own_key
        self._feedback_loops = feedback_loops

    async def ties(self, rcpts: tuple[str, ...], returned: parse.Returned) -> list[Tie]:
        """Every message of ours the report is about; empty when it is about none."""
        found: list[Tie] = []

        def add(target: Target, by: str) -> None:
            if target.list_id in self._links.lists and not any(
                t.target.list_id == target.list_id
                and same_address(t.target.address, target.address)
                for t in found
            ):
                found.append(Tie(Target(target.list_id, target.address), by))

        for rcpt in rcpts[:_MAX_LOOKUPS]:
            outbox_id = self._links.bounced_outbox_id(rcpt)
            if outbox_id is not None and (sent := await self._sent.sent_mail(outbox_id)):
                add(Target(sent.sender, sent.recipient), "verp")
        for target in self._links.find_targets(returned.headers, returned.text):
            add(target, "token")
        for match in list(_SENT_MESSAGE_ID.finditer(returned.message_id))[:_MAX_LOOKUPS]:
            sent = await self._sent.sent_mail(int(match.group(1)))
            if sent is not None and sent.provider_ref == match.group(0):
                add(Target(sent.sender, sent.recipient), "message_id")
        if self._own_key is not None and returned.raw and self._own_key.signed_by_us(returned.raw):
            signed = parse.headers_of(returned.raw)
            list_id = self._links.list_id(parse.address_of(parse.header(signed, "From")))
            to = parse.address_of(parse.header(signed, "To"))
            if list_id is not None and to:
                add(Target(list_id, to), "dkim")
        return found

    def trusted_reporter(self, auth: AuthResults) -> str | None:
        """The configured feedback loop this report authenticates as, or None."""
        for domain in self._feedback_loops:
            if auth.dkim_pass(domain) or auth.spf_pass(domain):
                return domain
        return None

    def list_named_in(self, headers: str) -> str | None:
        """The one list whose address the returned headers name (RFC 5965 section 3.2)."""
        lowered = headers.lower()
        named = [list_id for list_id in self._links.lists if list_id.lower() in lowered]
        return named[0] if len(named) == 1 else None
