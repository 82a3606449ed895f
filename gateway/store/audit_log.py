"""The ``admin_audit`` table: every operator action (keys, sender changes, privacy requests).

Rows are written in the transaction of the change they record (``write_audit``), so the log
holds exactly the changes that committed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import asyncpg


async def write_audit(
    conn: Any, actor: str, action: str, target: str, detail: Mapping[str, Any]
) -> None:
    """One row of the operators' audit log, in the caller's transaction."""
    await conn.execute(
        "INSERT INTO admin_audit (actor, action, target, detail) VALUES ($1, $2, $3, $4)",
        actor,
        action,
        target,
        json.dumps(detail),
    )


class AuditLog:
    """Reads the operators' audit log and records actions that change nothing else."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def audit(self, actor: str, action: str, target: str, detail: Mapping[str, Any]) -> None:
        """Record one operator action on its own."""
        async with self._pool.acquire() as conn:
            await write_audit(conn, actor, action, target, detail)

    async def audit_log(self, limit: int) -> list[dict[str, Any]]:
        """The newest audit records first."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT id, at, actor, action, target, detail FROM admin_audit"
                " ORDER BY id DESC LIMIT $1",
                limit,
            )
        return [
            {
                "id": r["id"],
                "at": r["at"].isoformat(),
                "actor": r["actor"],
                "action": r["action"],
                "target": r["target"],
                "detail": json.loads(r["detail"]),
            }
            for r in rows
        ]
