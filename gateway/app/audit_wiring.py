"""Audit wiring (I/O layer): the stores behind the audit routes and the checkpoint loop.

``AuditEdge`` is built by ``ApiEdge`` (gateway/app/api_wiring.py): it implements the edges'
``AuditService`` protocol over the stores (gateway/store/audit_queries.py, receipts_chain.py,
send_reports.py, consent_reviews.py, consent_exports.py) and the pure builders
(gateway/audit/), and runs ``checkpoint_loop``, a supervised loop that signs the chain's head
every ``CHECKPOINT_SECONDS`` (docs/receipts.md). A chain that no longer verifies is logged
as an error at every turn and never signed; the loop itself goes on (docs/DESIGN.md,
invariant 10).

The report's business days (its opt-out deadlines) are counted on the federal holiday
calendar of the rule data (``[rules] shipped_dir`` and ``operator_dir``, docs/rules.md) in
``[rules] default_zone``, the sender's zone. The rule data is read at the first report, not
at start-up, so a gateway that never reports does not need it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from gateway.app.audit_pdf import html_to_pdf
from gateway.audit.deadlines import BusinessCalendar
from gateway.audit.receipt import build_receipt
from gateway.audit.report import build_report
from gateway.audit.rules import REQUIRED_EVIDENCE
from gateway.audit.signing import CheckpointSigner
from gateway.edges.http import audit_api
from gateway.edges.http.audit_deps import AUDIT, AuditDeps
from gateway.edges.http.server import Register
from gateway.errors import ConfigError
from gateway.settings import SOURCE_RULES, RulesSettings, Settings
from gateway.store import audit_queries
from gateway.store.consent_exports import ConsentExports
from gateway.store.consent_reviews import ReviewQueue
from gateway.store.db import DB_ERRORS
from gateway.store.receipts_chain import ChainBroken, ReceiptChain
from gateway.store.send_reports import SendReport, SendReports
from keywords.catalog import SenderCatalog
from rules.errors import RulesError
from rules.holidays import HolidayCalendar
from rules.loading import load_rules

log = logging.getLogger(__name__)

CHECKPOINT_SECONDS = 60.0
# Ten business days skip the legal public holidays, 5 U.S.C. 6103 (config/rules/holidays.toml).
BUSINESS_HOLIDAYS = "us_federal"


def business_calendar(rules: RulesSettings) -> BusinessCalendar:
    """The federal holidays of the rule data and the sender's zone (reads the rule files)."""
    try:
        # "" only in settings built without a file: the source tree's table, as the gate reads.
        ruleset = load_rules(
            Path(rules.shipped_dir or SOURCE_RULES),
            Path(rules.operator_dir) if rules.operator_dir else None,
        )
    except RulesError as exc:
        raise ConfigError(f"rules: {exc}") from None
    definition = ruleset.holidays.get(BUSINESS_HOLIDAYS)
    if definition is None:
        raise ConfigError(f"{rules.shipped_dir}: holidays.{BUSINESS_HOLIDAYS} is not defined")
    return BusinessCalendar(HolidayCalendar([definition]), BUSINESS_HOLIDAYS, rules.default_zone)


class AuditEdge:
    """The audit service of one gateway instance."""

    def __init__(
        self, settings: Settings, pool: asyncpg.Pool, catalogs: Mapping[str, SenderCatalog]
    ) -> None:
        self._pool = pool
        self._catalogs = catalogs
        self._region = settings.pipeline.default_region
        self._rules = settings.rules
        self._calendar: BusinessCalendar | None = None
        self.chain = ReceiptChain(
            pool, CheckpointSigner.from_env(settings.env, settings.secret_key)
        )
        self.sends = SendReports(pool)
        self.reviews = ReviewQueue(pool)
        self.exports = ConsentExports(pool)

    async def report(
        self,
        start: datetime,
        end: datetime,
        sender: str | None,
        progress: audit_queries.Progress = lambda _stage: None,
    ) -> dict[str, Any]:
        """The report document of ``[start, end)``."""
        if self._calendar is None:
            self._calendar = await asyncio.to_thread(business_calendar, self._rules)
        data = await audit_queries.report_data(
            self._pool, start, end, sender, REQUIRED_EVIDENCE, progress
        )
        return build_report(data, start, end, sender, self._calendar)

    async def pdf(self, html: str) -> bytes:
        """``html`` printed by headless Chromium."""
        return await html_to_pdf(html)

    async def receipt(self, contact_id: int) -> dict[str, Any] | None:
        """One person's receipt, every event proven to a signed checkpoint."""
        rows = await self.chain.receipt_rows(contact_id)
        return None if rows is None else build_receipt(rows, datetime.now(UTC))

    async def record_sends(self, reports: Sequence[Mapping[str, Any]], api_key: str) -> list[str]:
        """Store checked send reports."""
        return await self.sends.record([SendReport(**r) for r in reports], api_key)

    async def open_decision(
        self,
        decision_id: str,
        scope: tuple[str, str, str],
        recipients: int,
        api_key: str,
        answers: bytes | None,
    ) -> None:
        """Record a batch gate request."""
        await self.sends.open_decision(decision_id, scope, recipients, api_key, answers)

    async def close_decision(self, decision_id: str, answers: bytes) -> None:
        """Store a batch gate request's whole answer."""
        await self.sends.close_decision(decision_id, answers)

    async def flagged(self, *, status: str, limit: int, after: int) -> list[dict[str, Any]]:
        """The review queue."""
        return await self.reviews.flagged(status=status, limit=limit, after=after)

    async def decide(self, inbound_id: int, action: str, note: str, actor: str) -> dict[str, Any]:
        """Record a review finding."""
        return await self.reviews.decide(inbound_id, action, note, actor)

    def stream(
        self, kind: str, sender: str, channel: str, since: datetime
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """A list out, in batches."""
        return self.exports.stream(kind, sender, channel, since)

    async def erased_entries(self, channel: str) -> int:
        """Erased people held as hashes only."""
        return await self.exports.erased_entries(channel)

    async def checkpoint_loop(self) -> None:
        """Sign the chain's head every ``CHECKPOINT_SECONDS`` (a supervised loop)."""
        while True:
            try:
                made = await self.chain.checkpoint_all()
                if made:
                    log.info(
                        "ledger checkpoint signed",
                        extra={"last_seq": made[-1].last_seq, "checkpoints": len(made)},
                    )
            except ChainBroken as exc:
                log.error(
                    "ledger chain does not verify; no checkpoint signed",
                    extra={"problems": exc.problems[:10]},
                )
            except DB_ERRORS as exc:
                log.warning("ledger checkpoint skipped", extra={"error": type(exc).__name__})
            await asyncio.sleep(CHECKPOINT_SECONDS)  # a timer, not a synchronization

    def http_module(self) -> Register:
        """The audit routes, with this service in the app."""

        def register(app: Any) -> None:
            app[AUDIT] = AuditDeps(self, self._catalogs, self._region)
            audit_api.register(app)

        return register
