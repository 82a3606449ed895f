"""Fixtures for the SMPP edge: a node-smpp SMSC simulator and a gateway bound to it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from smsc_sim import Smsc, bound_gateway
from support import PG_URL

from gateway.app import Gateway
from gateway.settings import Settings


@pytest.fixture
async def smsc() -> AsyncIterator[Smsc]:
    """A running SMSC simulator."""
    sim = await Smsc().start()
    yield sim
    await sim.close()


@pytest.fixture
async def smpp_gateway(settings: Settings, smsc: Smsc) -> AsyncIterator[Gateway]:
    """A gateway bound to the simulator as a transceiver."""
    async with bound_gateway(settings, smsc) as gw:
        yield gw


@pytest.fixture
async def db(settings: Settings, smpp_gateway: Gateway) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection to the test's schema (after the gateway migrated it)."""
    conn = await asyncpg.connect(PG_URL, server_settings={"search_path": settings.database.schema})
    yield conn
    await conn.close()
