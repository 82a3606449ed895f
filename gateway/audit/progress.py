"""A progress bar on stderr for long commands (pure layer apart from the stream it writes).

On a terminal the bar is redrawn in place; into a file or a pipe (a cron job's log) it writes
a line at each tenth instead, so the log stays readable. It shows counts and stage names only,
never an address or a text (docs/DESIGN.md, invariant 8).
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

_WIDTH = 30


class Progress:
    """``update(done)`` as work advances; ``finish()`` at the end."""

    def __init__(
        self, label: str, total: int, *, stream: TextIO | None = None, unit: str = ""
    ) -> None:
        self._label = label
        self._total = max(total, 1)
        self._stream = stream if stream is not None else sys.stderr
        self._unit = unit
        self._tty = self._stream.isatty()
        self._started = time.monotonic()
        self._last_tenth = -1
        self._last_draw = 0.0
        self._done = 0
        self._note = ""

    def update(self, done: int, note: str = "") -> None:
        """Record progress (``done`` of ``total``) and redraw when it is worth it."""
        self._done, self._note = min(done, self._total), note
        tenth = self._done * 10 // self._total
        now = time.monotonic()
        if self._tty and (now - self._last_draw >= 0.1 or self._done == self._total):
            self._last_draw = now
            self._stream.write("\r" + self._line())
            self._stream.flush()
        elif not self._tty and tenth != self._last_tenth:
            self._last_tenth = tenth
            self._stream.write(self._line() + "\n")
            self._stream.flush()

    def finish(self, note: str = "done") -> None:
        """Draw the full bar and end its line."""
        self._done, self._note = self._total, note
        self._stream.write(("\r" if self._tty else "") + self._line() + "\n")
        self._stream.flush()

    def _line(self) -> str:
        filled = self._done * _WIDTH // self._total
        elapsed = time.monotonic() - self._started
        unit = f" {self._unit}" if self._unit else ""
        return (
            f"{self._label} [{'#' * filled}{'-' * (_WIDTH - filled)}]"
            f" {self._done * 100 // self._total:3d}% {self._done}/{self._total}{unit}"
            f" {elapsed:6.1f}s {self._note}"
        ).rstrip()
