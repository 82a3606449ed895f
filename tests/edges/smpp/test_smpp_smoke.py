"""Smoke: a STOP through the simulator is committed, acknowledged and confirmed."""

from __future__ import annotations

import asyncpg
from smsc_sim import Smsc

from gateway.app import Gateway


async def test_stop_is_committed_then_confirmed(
    smsc: Smsc, smpp_gateway: Gateway, db: asyncpg.Connection
) -> None:
    """STOP answers ESME_ROK, writes one opt-out event and one confirmation by submit_sm."""
    assert 0 == await smsc.mo("STOP", source="14155550123")
    state = await smsc.wait_for(lambda s: len(s["submits"]) >= 1)
    submit = state["submits"][0]
    assert ("12345", "14155550123") == (submit["source"], submit["dest"])
    assert 1 == await db.fetchval("SELECT count(DISTINCT inbound_id) FROM ledger")
