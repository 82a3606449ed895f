"""Waiting with a deadline (I/O layer), safe against the Python 3.11 ``wait_for`` race.

On 3.11, ``asyncio.wait_for`` can swallow a cancellation that arrives just as the awaited
future completes (CPython gh-86296): a loop that waits with it may then never stop, and
shutdown hangs. ``asyncio.timeout`` does not have that defect, so every wait on a deadline
in the gateway goes through here.
"""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait until ``event`` is set or ``seconds`` pass; return whether it was set."""
    if seconds <= 0:
        return event.is_set()
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True
