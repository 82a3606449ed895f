"""Fixtures for the SMPP edge: a node-smpp SMSC simulator and a gateway bound to it."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from smsc_sim import Smsc, password_env
from support import PG_URL

from gateway.app import Gateway
from gateway.settings import OutboxSettings, Settings


@pytest.fixture
async def smsc() -> AsyncIterator[Smsc]:
    """A running SMSC simulator."""
    sim = await Smsc().start()
    yield sim
    await sim.close()


def smpp_settings(settings: Settings, sim: Smsc, **smsc: Any) -> Settings:
    """``settings`` with an [smpp] table bound to ``sim`` and a quick outbox."""
    return dataclasses.replace(
        settings,
        edges={**settings.edges, "smpp": sim.smpp_table(**smsc)},
        env={**settings.env, **password_env()},
        outbox=OutboxSettings(
            poll_interval_seconds=0.1,
            backoff_base_seconds=0.05,
            backoff_max_seconds=0.3,
            lease_seconds=2.0,
        ),
    )


@pytest.fixture
async def smpp_gateway(settings: Settings, smsc: Smsc) -> AsyncIterator[Gateway]:
    """A gateway bound to the simulator as a transceiver."""
    async with Gateway(smpp_settings(settings, smsc), serve_http=False) as gw:
        await smsc.wait_bound()
        yield gw


@pytest.fixture
async def db(settings: Settings, smpp_gateway: Gateway) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection to the test's schema (after the gateway migrated it)."""
    conn = await asyncpg.connect(PG_URL, server_settings={"search_path": settings.database.schema})
    yield conn
    await conn.close()
