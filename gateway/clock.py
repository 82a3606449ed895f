"""The gateway's clock (I/O layer helper): the instant the send rules read as "now".

In production it is the system clock. For tests only, ``GATEWAY_TEST_CLOCK`` (an ISO 8601
instant with its offset) makes the process start at that instant, and
``GATEWAY_TEST_CLOCK_RATE`` (default 1) makes it run that many times faster than real time,
so a test can watch a send deferred to 08:00 the next morning leave within seconds. The
database keeps real time: a deferred send's ``next_attempt_at`` is the real instant at which
this clock reads the deferral's ``not_before`` (``to_real``), so the outbox needs no clock of
its own. ``gateway serve`` logs a warning when the test clock is set (README, "Send rules").
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from gateway.errors import ConfigError

CLOCK_ENV = "GATEWAY_TEST_CLOCK"
RATE_ENV = "GATEWAY_TEST_CLOCK_RATE"


class Clock:
    """``now()`` is ``start + (real now - real start) * rate``; the system clock by default."""

    __slots__ = ("_real_start", "_start", "rate")

    def __init__(self, start: datetime | None = None, rate: float = 1.0) -> None:
        self._real_start = time.time()
        self._start = start
        self.rate = rate

    @property
    def simulated(self) -> bool:
        """Whether this is the test clock."""
        return self._start is not None

    def now(self) -> datetime:
        """The current instant, aware, in UTC."""
        real = time.time()
        if self._start is None:
            return datetime.fromtimestamp(real, UTC)
        return self._start + timedelta(seconds=(real - self._real_start) * self.rate)

    def to_real(self, moment: datetime) -> datetime:
        """The real instant at which this clock reads ``moment``."""
        if self._start is None:
            return moment
        elapsed = (moment - self._start).total_seconds() / self.rate
        return datetime.fromtimestamp(self._real_start + elapsed, UTC)

    def from_real(self, moment: datetime) -> datetime:
        """What this clock read at the real instant ``moment``."""
        if self._start is None:
            return moment
        elapsed = (moment.timestamp() - self._real_start) * self.rate
        return self._start + timedelta(seconds=elapsed)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Clock:
        """The test clock if ``GATEWAY_TEST_CLOCK`` is set, else the system clock."""
        raw = env.get(CLOCK_ENV, "")
        if not raw:
            return cls()
        try:
            start = datetime.fromisoformat(raw)
        except ValueError:
            raise ConfigError(f"{CLOCK_ENV}: {raw!r} is not an ISO 8601 instant") from None
        if start.tzinfo is None:
            raise ConfigError(f"{CLOCK_ENV}: {raw!r} needs an offset, such as Z or -05:00")
        try:
            rate = float(env.get(RATE_ENV, "1"))
        except ValueError:
            raise ConfigError(f"{RATE_ENV}: not a number") from None
        if not 0 < rate <= 100_000:
            raise ConfigError(f"{RATE_ENV}: must be above 0 and at most 100000")
        return cls(start.astimezone(UTC), rate)
