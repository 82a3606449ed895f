"""Test support: settings for a private schema and key prefix, inbound-message builders,
and ``eventually``, the one way tests wait for a condition that has no event to await."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import os
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar, overload

import asyncpg

from gateway.messages import InboundMessage, Method
from gateway.settings import CacheSettings, DatabaseSettings, HttpSettings, Settings, load_settings
from keywords.model import Channel

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config" / "gateway.toml"
PG_URL = os.environ.get("GATEWAY_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
# Database 15, not 0: benchmarks and demos use 0, and a test's clean-up SCANs the database.
REDIS_URL = os.environ.get("GATEWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
SECRET = "test-secret-key-that-is-long-enough-0123456789"
SHORT_CODE = "12345"
T = TypeVar("T")
_NOTHING = object()  # no check has finished yet


def make_settings(
    schema: str,
    prefix: str,
    *,
    redis_url: str | None = REDIS_URL,
    dsn: str = PG_URL,
    rules: bool = False,
) -> Settings:
    """Settings from the example config, pointed at this test's schema and prefix.

    The send rules are off unless ``rules``: a test about consent must not depend on the
    hour it runs at (tests/edges/api/test_api_rules.py turns them on with a fixed ``at``).
    """
    base = load_settings(CONFIG, {"GATEWAY_SECRET_KEY": SECRET})
    return dataclasses.replace(
        base,
        http=HttpSettings(host="127.0.0.1", port=0),
        database=DatabaseSettings(schema=schema, pool_min=1, pool_max=6),
        cache=CacheSettings(key_prefix=prefix, health_interval_seconds=0.05),
        database_url=dsn,
        redis_url=redis_url,
        rules=dataclasses.replace(base.rules, enabled=rules),
    )


def sms(text: str, *, contact: str = "+14155550123", key: str | None = None,
        sender: str = SHORT_CODE) -> InboundMessage:  # fmt: skip
    """An inbound SMS as an edge would build it."""
    return InboundMessage(
        channel=Channel.SMS,
        sender=sender,
        contact=contact,
        text=text,
        method=Method.SMS_KEYWORD,
        dedupe_key=key or f"test:{uuid.uuid4().hex}",
        received_at=datetime.now(UTC),
        evidence={"message_id": key or "n/a"},
    )


async def count_rows(conn: asyncpg.Connection, table: str) -> int:
    """Rows in ``table`` of the connection's schema."""
    value = await conn.fetchval(f"SELECT count(*) FROM {table}")  # noqa: S608 - test tables
    assert isinstance(value, int)
    return value


@overload
async def eventually(
    check: Callable[[], Awaitable[T | None]],
    *,
    timeout: float = ...,  # noqa: ASYNC109 - the implementation says why
    interval: float = ...,
    message: str | Callable[[], str] = ...,
) -> T: ...
@overload
async def eventually(
    check: Callable[[], T | None],
    *,
    timeout: float = ...,  # noqa: ASYNC109 - the implementation says why
    interval: float = ...,
    message: str | Callable[[], str] = ...,
) -> T: ...
async def eventually(
    check: Callable[[], object],
    *,
    timeout: float = 10.0,  # noqa: ASYNC109 - a miss fails with the message, not TimeoutError
    interval: float = 0.02,
    message: str | Callable[[], str] = "the condition never held",
) -> object:
    """Call ``check`` every ``interval`` seconds until it returns a truthy value; return it.

    ``check`` is a plain function or one that returns an awaitable (an ``async def``, a
    lambda calling one); an exception it raises ends the wait at once. When ``timeout``
    seconds pass (a check still running included), ``AssertionError`` says ``message``
    (or what ``message()`` returns then) and the last value seen.

    For what has no event to await: a row in PostgreSQL, a log record, a peer's state.
    Where there is an event, await it (``gateway.waiting.wait_event``). The deadline is an
    ``asyncio.timeout``, for the reason gateway/waiting.py gives.
    """
    last: object = _NOTHING
    try:
        async with asyncio.timeout(timeout) as deadline:
            while True:
                value = check()
                if inspect.isawaitable(value):
                    value = await value
                if value:
                    return value
                last = value
                await asyncio.sleep(interval)
    except TimeoutError:
        if not deadline.expired():
            raise  # the check's own TimeoutError, not our deadline
    text = message() if callable(message) else message
    seen = "none finished" if last is _NOTHING else repr(last)[:500]
    raise AssertionError(f"{text} (within {timeout:g} s; last value: {seen})")
