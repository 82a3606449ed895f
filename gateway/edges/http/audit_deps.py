"""What the audit routes need (I/O layer), and the batch gate's decision record.

The composition root (gateway/app/audit_wiring.py) puts an ``AuditDeps`` in the app under
``AUDIT``; the HTTP modules reach the store only through the ``AuditService`` protocol, as
the other API modules do through ``ApiDeps`` (gateway/edges/http/auth.py).

``Decision`` is how the batch gate (gateway/edges/http/gate_api.py) records what it answered:
one id per request, and one byte per recipient kept while the answer streams, stored when it
ends. Recording never holds the gate up or fails it: if the row cannot be written the answer
goes out without a decision id (the caller then has nothing to report against).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from aiohttp import web

from gateway.gate import GateAnswer
from keywords.catalog import SenderCatalog

log = logging.getLogger(__name__)

# The gate's reasons as stored (gateway/store/send_reports.py keeps the same table).
ANSWER_CODES: Mapping[str, int] = {
    "opted_in": 1,
    "no_consent": 2,
    "pending_confirmation": 3,
    "opted_out": 4,
    "invalid_address": 5,
    "suppressed": 6,
    "deferred": 7,
    "refused_by_rule": 8,
}


class AuditService(Protocol):
    """Reports, receipts, send reports, gate decisions, the review queue and the lists."""

    async def report(
        self, start: datetime, end: datetime, sender: str | None
    ) -> dict[str, Any]: ...

    async def pdf(self, html: str) -> bytes: ...

    async def receipt(self, contact_id: int) -> dict[str, Any] | None: ...

    async def record_sends(
        self, reports: Sequence[Mapping[str, Any]], api_key: str
    ) -> list[str]: ...

    async def open_decision(
        self,
        decision_id: str,
        scope: tuple[str, str, str],
        recipients: int,
        api_key: str,
        answers: bytes | None,
    ) -> None: ...

    async def close_decision(self, decision_id: str, answers: bytes) -> None: ...

    async def flagged(self, *, status: str, limit: int, after: int) -> list[dict[str, Any]]: ...

    async def decide(
        self, inbound_id: int, action: str, note: str, actor: str
    ) -> dict[str, Any]: ...

    def stream(
        self, kind: str, sender: str, channel: str, since: datetime
    ) -> AsyncIterator[list[dict[str, Any]]]: ...

    async def erased_entries(self, channel: str) -> int: ...


@dataclass(frozen=True, slots=True)
class AuditDeps:
    """Everything the audit routes use."""

    service: AuditService
    catalogs: Mapping[str, SenderCatalog]
    default_region: str


AUDIT = web.AppKey("audit", AuditDeps)


@dataclass(slots=True)
class Decision:
    """One batch gate request's answers, by position, while they stream."""

    id: str
    service: AuditService
    codes: bytearray = field(default_factory=bytearray)

    def add(self, answers: Sequence[GateAnswer]) -> None:
        """Keep the codes of the next answers (C-speed: a map over the reasons)."""
        self.codes += bytes(map(ANSWER_CODES.__getitem__, [a.reason for a in answers]))

    async def finish(self) -> None:
        """Store the whole answer; a failure is logged, the answer is already out."""
        try:
            await self.service.close_decision(self.id, bytes(self.codes))
        except Exception as exc:  # noqa: BLE001 - a record must never break an answer already sent
            log.warning("gate decision not completed", extra={"error": type(exc).__name__})


async def start_decision(
    request: web.Request,
    scope: tuple[str, str, str],
    recipients: int,
    first: Sequence[GateAnswer],
    api_key: str,
) -> Decision | None:
    """Open the record of a batch gate answer; None when it could not be written."""
    deps = request.app.get(AUDIT)
    if deps is None:
        return None
    decision = Decision(secrets.token_hex(16), deps.service)
    decision.add(first)
    whole = len(first) >= recipients
    try:
        await deps.service.open_decision(
            decision.id, scope, recipients, api_key, bytes(decision.codes) if whole else None
        )
    except Exception as exc:  # noqa: BLE001 - the gate answers whether or not it is recorded
        log.warning("gate decision not recorded", extra={"error": type(exc).__name__})
        return None
    return decision
