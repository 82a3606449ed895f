"""Readiness (I/O layer): does this instance keep every promise right now?

``/readyz`` answers 200 only when all of these hold, and 503 naming what does not:

- PostgreSQL answers (nothing can be recorded without it);
- the consent writer runs (its tasks are alive);
- every supervised loop runs: the outbox worker, the cache guard, the sweeps, the SMPP
  sessions (a loop in its restart backoff is down);
- every SMS sender that sends its replies by SMPP has a bound session able to submit;
- the SMTP server accepts connections, when ``[smtp]`` is configured;
- no opt-out confirmation has waited longer than ``outbox.max_opt_out_age_seconds``
  (47 CFR 64.1200(a)(11): one confirmation, presumed reasonable within five minutes).

``/readyz?scope=intake`` checks only what taking an opt-out needs (PostgreSQL and the
writer). A load balancer that routes on the full check stops sending traffic to every
instance at once when the SMSC is down, and then no STOP can be recorded either: point it
at the intake scope and alert on the full one (README, Operations).

The answer names checks and tasks, never an error text: the endpoint is unauthenticated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import asyncpg

from gateway.store.db import DB_ERRORS, ping
from gateway.supervisor import Supervisor


class OutboxAges(Protocol):
    """The outbox worker as readiness sees it."""

    async def oldest_opt_out_age(self) -> float:
        """Seconds the oldest unsent opt-out confirmation has waited."""


@dataclass(frozen=True, slots=True)
class Report:
    """One readiness answer."""

    ready: bool
    body: dict[str, Any] = field(default_factory=dict)


class Readiness:
    """Runs the checks for ``/readyz``."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        supervisor: Supervisor,
        writer_running: Callable[[], bool],
        cache_usable: Callable[[], bool],
        outbox: OutboxAges,
        max_opt_out_age: float,
        unbound_sms_senders: Callable[[], Iterable[str]] = tuple,
        smtp_serving: Callable[[], bool | None] = lambda: None,
    ) -> None:
        self._pool = pool
        self._supervisor = supervisor
        self._writer_running = writer_running
        self._cache_usable = cache_usable
        self._outbox = outbox
        self._max_age = max_opt_out_age
        self._unbound = unbound_sms_senders
        self._smtp = smtp_serving

    async def check(self, *, intake_only: bool = False) -> Report:
        """Every check (or the intake ones); the body names each result."""
        problems: list[str] = []
        body: dict[str, Any] = {}
        try:
            await ping(self._pool, seconds=2)
            body["database"] = "ok"
        except DB_ERRORS:
            body["database"] = "down"
            problems.append("database")
        body["writer"] = "ok" if self._writer_running() else "down"
        if body["writer"] != "ok":
            problems.append("writer")
        body["cache"] = "ok" if self._cache_usable() else "bypassed"
        if not intake_only:
            down = sorted(self._supervisor.down())
            body["tasks_down"] = down
            problems += [f"task:{name}" for name in down]
            unbound = sorted(self._unbound())
            body["smpp_unbound_senders"] = unbound
            problems += [f"smpp:{sender}" for sender in unbound]
            smtp = self._smtp()
            if smtp is not None:
                body["smtp"] = "ok" if smtp else "down"
                if not smtp:
                    problems.append("smtp")
            if self._max_age > 0 and body["database"] == "ok":
                try:
                    age = await self._outbox.oldest_opt_out_age()
                except DB_ERRORS:
                    age = 0.0  # the database check above failed or will: already reported
                body["oldest_opt_out_confirmation_seconds"] = round(age, 1)
                if age > self._max_age:
                    problems.append("opt_out_confirmations_late")
        body["problems"] = problems
        body["status"] = "unavailable" if problems else "ready"
        return Report(not problems, body)
