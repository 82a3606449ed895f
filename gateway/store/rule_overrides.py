"""The ``rule_overrides`` table: operator rule documents changed through the admin API.

A document is the TOML text of one file of ``[rules] operator_dir`` (docs/rules.md,
"Operators: adding and replacing rules"). A change is checked against every stored document
as they will be after it, under a lock on the table, so two instances changing documents at
once cannot each pass their check and together store a set that conflicts; then it is
stored, audited and announced (``NOTIFY <schema>_api, 'rules'``) in one transaction, and
every instance rebuilds its rules from the table (gateway/app/rules_wiring.py). A check that
fails raises out of the transaction, which then changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import asyncpg

from gateway.store.audit_log import write_audit

if TYPE_CHECKING:
    from gateway.store.db import Connection

# Given the documents as they would be after the change (name -> TOML text); raises to
# refuse it.
Check = Callable[[Mapping[str, str]], None]


@dataclass(frozen=True, slots=True)
class StoredRules:
    """One stored document and who last changed it."""

    name: str
    document: str
    revision: int
    updated_at: datetime
    updated_by: str


class RuleOverrides:
    """Stores, deletes and reads the admin API's rule documents."""

    def __init__(self, pool: asyncpg.Pool, *, channel: str) -> None:
        self._pool = pool
        self.channel = channel  # the NOTIFY channel of this schema

    async def save(self, name: str, document: str, *, actor: str, check: Check) -> int:
        """Store ``document`` as ``name`` if ``check`` passes on the result, audit and
        announce it; return its revision."""
        async with self._pool.acquire() as conn, conn.transaction():
            current = await _locked_documents(conn)
            check({**current, name: document})
            revision: int = await conn.fetchval(
                "INSERT INTO rule_overrides (name, document, revision, updated_by)"
                " VALUES ($1, $2, 1, $3) ON CONFLICT (name) DO UPDATE SET"
                " document = EXCLUDED.document, revision = rule_overrides.revision + 1,"
                " updated_at = now(), updated_by = EXCLUDED.updated_by RETURNING revision",
                name,
                document,
                actor,
            )
            await write_audit(
                conn, actor, "rules.update", name, {"revision": revision, "document": document}
            )
            await conn.execute("SELECT pg_notify($1, 'rules')", self.channel)
        return revision

    async def delete(self, name: str, *, actor: str, check: Check) -> int | None:
        """Remove ``name`` if ``check`` passes on what is left, audit and announce it; the
        revision removed, or None when there was no such document (nothing written)."""
        async with self._pool.acquire() as conn, conn.transaction():
            current = await _locked_documents(conn)
            if name not in current:
                return None
            check({n: d for n, d in current.items() if n != name})
            revision: int = await conn.fetchval(
                "DELETE FROM rule_overrides WHERE name = $1 RETURNING revision", name
            )
            # The removed text goes to the audit log: the log alone then says which rules
            # were in force at any time.
            await write_audit(
                conn,
                actor,
                "rules.delete",
                name,
                {"revision": revision, "document": current[name]},
            )
            await conn.execute("SELECT pg_notify($1, 'rules')", self.channel)
        return revision

    async def documents(self) -> list[StoredRules]:
        """Every stored document, by name."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT name, document, revision, updated_at, updated_by FROM rule_overrides"
                " ORDER BY name"
            )
        return [StoredRules(**dict(r)) for r in rows]


async def _locked_documents(conn: Connection) -> dict[str, str]:
    """The stored documents, read after taking a lock only one changer holds at a time
    (SHARE ROW EXCLUSIVE conflicts with itself and lets plain reads through)."""
    await conn.execute("LOCK TABLE rule_overrides IN SHARE ROW EXCLUSIVE MODE")
    rows = await conn.fetch("SELECT name, document FROM rule_overrides")
    return {r["name"]: r["document"] for r in rows}
