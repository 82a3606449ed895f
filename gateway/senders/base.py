"""What every channel sender shares: the row it is handed, the error it raises, its protocol.

The outbox worker (gateway/outbox.py) claims a committed reply as an ``OutboxRow`` and hands
it to the ``OutboundSender`` of its channel: SMPP submit_sm (gateway/edges/smpp/edge.py), the
SMTP relay (gateway/senders/email.py) or an HTTP SMS provider
(gateway/senders/http_provider.py). A sender raises ``SendError`` saying whether a retry can
help; anything else it raises is that row's failure alone.
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
    """A sender could not send; ``temporary`` says whether to retry."""

    def __init__(self, message: str, *, temporary: bool) -> None:
        super().__init__(message)
        self.temporary = temporary


class OutboundSender(Protocol):
    """A channel's way out (SMPP submit_sm, SMTP relay, HTTP provider)."""

    async def send(self, row: OutboxRow) -> str | None:
        """Send ``row``; return the provider's reference, or raise ``SendError``."""
