"""The change feed: one LISTEN per instance on ``<schema>_api``, for changes made elsewhere.

Keys, sender definitions, rule documents and the suppression list announce their changes
with ``NOTIFY`` in the same transaction that makes them, so a listener hears only committed
changes. After any reconnect the feed reports topic ``*`` and the instance reloads
everything: a notice sent while nobody listened is otherwise lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import asyncpg

log = logging.getLogger(__name__)

Listener = Callable[[str], Awaitable[None]]


class ChangeFeed:
    """LISTENs on the schema's API channel and hands each topic to ``on_change``."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        channel: str,
        on_change: Listener,
        *,
        retry_seconds: float = 1.0,
    ) -> None:
        self._connect = connect
        self._channel = channel
        self._on_change = on_change
        self._retry = retry_seconds
        self._topics: asyncio.Queue[str] = asyncio.Queue()

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        self._topics.put_nowait(str(payload))

    async def run(self) -> None:
        """Listen until cancelled; reconnect and reload everything after a lost connection."""
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await self._connect()
                await conn.add_listener(self._channel, self._notified)
                await self._on_change("*")  # whatever changed while nobody listened
                while not conn.is_closed():
                    with contextlib.suppress(TimeoutError):
                        topic = await asyncio.wait_for(self._topics.get(), self._retry)
                        await self._on_change(topic)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                log.warning("change feed: database unavailable; retrying")
            finally:
                if conn is not None:
                    conn.terminate()
            await asyncio.sleep(self._retry)  # back off before reconnecting (not a sync point)
