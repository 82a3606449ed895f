"""The gateway's JSON log lines captured in-process, as ``gateway serve`` writes them."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from gateway.logs import JsonFormatter


class JsonLines(logging.Handler):
    """Each record formatted by the gateway's ``JsonFormatter``, kept in ``lines``."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextmanager
def captured(level: int = logging.DEBUG) -> Iterator[list[str]]:
    """Every line of every logger (aiohttp's included) at ``level`` while the block runs."""
    handler = JsonLines()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield handler.lines
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
