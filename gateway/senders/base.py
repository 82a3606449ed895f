"""What every channel sender shares: the row it is handed, the error it raises, its protocol.

The outbox worker (gateway/outbox.py) claims a committed reply as an ``OutboxRow`` and hands
it to the ``OutboundSender`` of its channel: SMPP submit_sm (gateway/edges/smpp/edge.py), the
SMTP relay (gateway/senders/email.py) or an HTTP SMS provider
(gateway/senders/http_provider.py). A sender raises ``SendError`` saying whether a retry can
help, and whether anything left at all; anything else it raises is that row's failure alone.

``attempts`` on a row counts sends that may have reached a peer. A sender with no way out at
the moment (no SMSC bound) says so with ``available()``, and the worker leaves its rows
queued instead of leasing them; a refusal raised before anything left (``attempted=False``)
hands the attempt back, so an outage, however long, never spends a reply's attempts and
never fails an opt-out confirmation for good (docs/DESIGN.md, invariant 5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One reply to send."""

    id: int
    channel: str
    sender: str
    program: str | None
    recipient: str
    kind: str
    language: str
    body: str
    attempts: int


class SendError(Exception):
    """A sender could not send; ``temporary`` says whether to retry.

    ``attempted=False`` says nothing was handed to a peer (there was none to hand it to):
    the attempt is given back and ``max_attempts`` never ends the row on its account.
    """

    def __init__(self, message: str, *, temporary: bool, attempted: bool = True) -> None:
        super().__init__(message)
        self.temporary = temporary
        self.attempted = attempted


class OutboundSender(Protocol):
    """A channel's way out (SMPP submit_sm, SMTP relay, HTTP provider)."""

    def available(self) -> bool:
        """Whether a send now could leave at all; while not, the channel is not claimed."""

    async def send(self, row: OutboxRow) -> str | None:
        """Send ``row``; return the provider's reference, or raise ``SendError``."""
