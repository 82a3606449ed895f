"""The ``sender_overrides`` table: sender definitions changed through the admin API.

A saved definition is audited and announced (``NOTIFY <schema>_api, 'senders'``) in one
transaction; every instance then loads it into its catalog registry (gateway/catalogs.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import asyncpg

from gateway.store.audit_log import write_audit


class SenderOverrides:
    """Stores and reads the admin API's sender definitions."""

    def __init__(self, pool: asyncpg.Pool, *, channel: str) -> None:
        self._pool = pool
        self.channel = channel  # the NOTIFY channel of this schema

    async def save_sender(self, sender: str, definition: Mapping[str, Any], *, actor: str) -> int:
        """Store a validated sender definition, audit it and announce it; return its revision."""
        async with self._pool.acquire() as conn, conn.transaction():
            revision: int = await conn.fetchval(
                "INSERT INTO sender_overrides (sender, definition, revision, updated_by)"
                " VALUES ($1, $2, 1, $3) ON CONFLICT (sender) DO UPDATE SET"
                " definition = EXCLUDED.definition, revision = sender_overrides.revision + 1,"
                " updated_at = now(), updated_by = EXCLUDED.updated_by RETURNING revision",
                sender,
                json.dumps(definition),
                actor,
            )
            await write_audit(
                conn,
                actor,
                "sender.update",
                sender,
                {"revision": revision, "definition": definition},
            )
            await conn.execute("SELECT pg_notify($1, 'senders')", self.channel)
        return revision

    async def sender_overrides(self) -> dict[str, dict[str, Any]]:
        """Every stored sender definition, by sender."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch("SELECT sender, definition FROM sender_overrides")
        return {r["sender"]: json.loads(r["definition"]) for r in rows}
