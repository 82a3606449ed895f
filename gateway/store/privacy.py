"""Data-subject rights and send-through in Postgres (store layer): export, rectify, erase, the
suppression list and the preference page's view of a contact (gated sends are queued by
``gateway/store/send_queue.py``).

Consent changes still go through the writer (the caller runs the opt-outs of an erasure
through the pipeline first); what this module changes outside the writer follows the cache
rule of ``gateway/store/cache.py``, by the writer's own path (``gateway/store/invalidate.py``):
a rectification bumps the consent rows' versions and tombstones the old and the new address's
keys *before* COMMIT, and refuses with a temporary error when the cache cannot be told, so a
stale entry can never allow a send.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

import asyncpg

from gateway.errors import BadInput, TemporaryFailure
from gateway.store import email_reports
from gateway.store.audit_log import write_audit
from gateway.store.cache import CachedConsent, CacheUnavailable, ConsentCache, ConsentKey
from gateway.store.db import DB_ERRORS
from gateway.store.guard import CacheGuard
from gateway.store.invalidate import Invalidation, fill
from gateway.store.send_queue import contact_id
from gateway.store.suppression import Suppression, add_entry
from keywords.model import ConsentState

if TYPE_CHECKING:
    pass


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _record(row: asyncpg.Record) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, bytes | memoryview):
            value = bytes(value).hex()
        elif key in ("evidence", "detail") and isinstance(value, str):
            value = json.loads(value)
        out[key] = value
    return out


class PrivacyStore:
    """GDPR art. 15-17 requests against the consent tables."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        cache: ConsentCache,
        guard: CacheGuard,
        suppression: Suppression,
        *,
        notify_channel: str,
    ) -> None:
        self._pool = pool
        self._cache = cache
        self._guard = guard
        self.suppression = suppression
        self._channel = notify_channel

    async def consent_of(self, channel: str, address: str) -> dict[tuple[str, str], str]:
        """(sender, program) -> state for one address (the preference page)."""
        try:
            async with self._pool.acquire() as conn:
                rows = await conn.fetch(
                    "SELECT s.sender, s.program, s.state FROM contacts c JOIN consent s"
                    " ON s.contact_id = c.id AND s.channel = c.channel"
                    " WHERE c.channel = $1 AND c.address = $2",
                    channel,
                    address,
                )
        except DB_ERRORS as exc:
            raise TemporaryFailure("consent store unavailable") from exc
        return {(r["sender"], r["program"]): r["state"] for r in rows}

    async def is_suppressed(self, channel: str, address: str, legacy: str | None = None) -> bool:
        """The table's answer under every key held (rectify asks this; the gate uses the
        in-memory copy, and capture is checked by the writer)."""
        digests = [d for _, d in self.suppression.digests(channel, address, legacy)]
        async with self._pool.acquire() as conn:
            found = await conn.fetchval(
                "SELECT 1 FROM suppression WHERE channel = $1 AND address_hmac = ANY($2::bytea[])"
                " LIMIT 1",
                channel,
                digests,
            )
        return found is not None

    async def export(self, channel: str, address: str, actor: str) -> dict[str, Any] | None:
        """Everything held on one contact, ledger included (GDPR art. 15); None if unknown."""
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            cid = await contact_id(conn, channel, address, "SHARE")
            if cid is None:
                return None
            queries = {
                # A recorded state and time zone (migration 006) are data on the person too.
                "contact": "SELECT id, channel, address, created_at, state, time_zone"
                " FROM contacts WHERE id = $1",
                "consent": "SELECT sender, program, channel, state, version, updated_at, last_seq"
                " FROM consent WHERE contact_id = $1 ORDER BY sender, program",
                "inbound_events": "SELECT id, dedupe_key, channel, sender, method, received_at,"
                " carrier_time, intent, match, needs_review, body, evidence::text AS evidence"
                " FROM inbound_events WHERE contact_id = $1 ORDER BY id",
                "ledger": "SELECT seq, channel, sender, program, action, method, old_state,"
                " new_state, server_time, carrier_time, inbound_id, evidence::text AS evidence,"
                " evidence_sha256, prev_hash, hash FROM ledger WHERE contact_id = $1 ORDER BY seq",
                "messages": "SELECT id, channel, sender, program, kind, body, status, created_at,"
                " sent_at FROM outbox WHERE contact_id = $1 ORDER BY id",
                "previous_addresses": "SELECT address, replaced_at FROM contact_addresses"
                " WHERE contact_id = $1 ORDER BY id",
            }
            data: dict[str, Any] = {}
            for name, sql in queries.items():
                data[name] = [_record(r) for r in await conn.fetch(sql, cid)]
            data["contact"] = data["contact"][0]
            # Hard bounces recorded by the email edge (migration 003) name the address too.
            bounces = await conn.fetch(
                "SELECT list_id, status, diagnostic, bounces, first_at, last_at"
                " FROM undeliverable WHERE address = $1",
                address,
            )
            data["bounces"] = [_record(r) for r in bounces]
            # Complaints and bounces naming the address that we did not believe (migration 010).
            data["unverified_reports"] = await email_reports.export_rows(conn, address)
            await write_audit(conn, actor, "privacy.export", f"contact:{cid}", {})
        return data

    async def rectify(self, channel: str, old: str, new: str, actor: str) -> int:
        """Change a contact's address, keeping the old one in its history (GDPR art. 16)."""
        if old == new:
            raise BadInput("the new address is the old one", code="same_address")
        put: list[tuple[ConsentKey, CachedConsent]] = []
        async with self._pool.acquire() as conn, conn.transaction():
            cid = await contact_id(conn, channel, old, "UPDATE")
            if cid is None:
                raise BadInput("no contact with that address", code="unknown_contact")
            if await contact_id(conn, channel, new, "UPDATE") is not None:
                raise BadInput("the new address belongs to another contact", code="address_taken")
            rows = await conn.fetch(
                "UPDATE consent SET version = version + 1 WHERE contact_id = $1"
                " RETURNING sender, program, state, version, updated_at",
                cid,
            )
            tombstones = []
            for r in rows:
                for address in (old, new):
                    key = ConsentKey(channel, r["sender"], r["program"], address)
                    tombstones.append((key, r["version"]))
                entry = CachedConsent(
                    ConsentState(r["state"]), r["version"], r["updated_at"].timestamp()
                )
                put.append((ConsentKey(channel, r["sender"], r["program"], new), entry))
            try:
                # No repair row can name the old address's keys (invalidate.py): refuse.
                await Invalidation(self._cache, self._guard, tombstones).complete(conn, None)
            except CacheUnavailable as exc:
                raise TemporaryFailure("the consent cache is unavailable; retry later") from exc
            await conn.execute(
                "INSERT INTO contact_addresses (contact_id, address) VALUES ($1, $2)", cid, old
            )
            await conn.execute("UPDATE contacts SET address = $2 WHERE id = $1", cid, new)
            await write_audit(
                conn, actor, "privacy.rectify", f"contact:{cid}", {"channel": channel}
            )
        if put:
            await fill(self._cache, self._guard, put)
        return cid

    async def senders_of(self, channel: str, address: str) -> list[str]:
        """Senders the address has any consent row with (the erasure opts out of each)."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT DISTINCT s.sender FROM contacts c JOIN consent s ON s.contact_id = c.id"
                " WHERE c.channel = $1 AND c.address = $2 ORDER BY 1",
                channel,
                address,
            )
        return [r["sender"] for r in rows]

    async def erase(self, channel: str, address: str, actor: str) -> int | None:
        """Pseudonymise the contact and redact what it said; keep a keyed hash (GDPR art. 17).

        Ledger rows stay (their hashes prove the history), with ``evidence`` set to NULL, the
        one update the ledger trigger allows (migration 004).
        """
        async with self._pool.acquire() as conn, conn.transaction():
            cid = await contact_id(conn, channel, address, "UPDATE")
            # Email contacts that differed from this one only by case (migration 011) are
            # the same person: erased with it.
            ids = [cid] if cid is not None else []
            if channel == "email":
                ids += [
                    r["contact_id"]
                    for r in await conn.fetch(
                        "SELECT a.contact_id FROM contact_addresses a JOIN contacts c"
                        " ON c.id = a.contact_id WHERE c.channel = 'email'"
                        " AND c.address LIKE 'case-collision:%' AND lower(a.address) = $1"
                        " ORDER BY 1 FOR UPDATE OF c",
                        address,
                    )
                    if r["contact_id"] not in ids
                ]
            spellings = {address}
            if ids:
                previous = await conn.fetch(
                    "SELECT address FROM contact_addresses WHERE contact_id = ANY($1::bigint[])",
                    ids,
                )
                # Keyed as contacts are now (an old spelling's case folded, migration 011).
                fold = str.lower if channel == "email" else str
                spellings |= {fold(r["address"]) for r in previous}
            added: list[bytes] = []
            for spelling in sorted(spellings):
                digests = self.suppression.digests(channel, spelling)
                await add_entry(conn, channel, digests, "erasure")
                added.extend(d for _, d in digests)
            await conn.execute("DELETE FROM undeliverable WHERE address = $1", address)
            await email_reports.erase_address(conn, address)
            if channel == "sms":  # parts of a long text still waiting for the rest
                await conn.execute("DELETE FROM sms_part_sets WHERE source = $1", address)
            for cid in ids:
                # The recorded location (migration 006) goes with the address.
                await conn.execute(
                    "UPDATE contacts SET address = 'erased:' || id, state = NULL,"
                    " time_zone = NULL WHERE id = $1",
                    cid,
                )
                await conn.execute("DELETE FROM contact_addresses WHERE contact_id = $1", cid)
                # An open keep offer (migration 003) must not outlive the person's data.
                await conn.execute("DELETE FROM keep_offers WHERE contact_id = $1", cid)
                await conn.execute(
                    "UPDATE inbound_events SET body = '', evidence = '{}' WHERE contact_id = $1",
                    cid,
                )
                await conn.execute(
                    "UPDATE ledger SET evidence = NULL WHERE contact_id = $1"
                    " AND evidence IS NOT NULL",
                    cid,
                )
                await conn.execute(
                    "UPDATE outbox SET recipient = 'erased', body = '',"
                    " status = CASE WHEN status IN ('queued', 'sending') THEN 'cancelled'"
                    " ELSE status END WHERE contact_id = $1",
                    cid,
                )
            target = f"contact:{ids[0]}" if ids else "unknown-contact"
            detail: dict[str, Any] = {"channel": channel}
            if len(ids) > 1:
                detail["case_collisions"] = [f"contact:{i}" for i in ids[1:]]
            await write_audit(conn, actor, "privacy.erase", target, detail)
            await conn.execute("SELECT pg_notify($1, 'suppression')", self._channel)
        self.suppression.add(added)
        return ids[0] if ids else None

    async def expired_pending(self, older_than_seconds: int, limit: int) -> list[tuple[Any, ...]]:
        """Double opt-ins still unconfirmed after the window: (channel, sender, program,
        address, contact id, version), oldest first."""
        try:
            async with self._pool.acquire() as conn:
                rows = await conn.fetch(
                    "SELECT s.channel, s.sender, s.program, c.address, c.id, s.version"
                    " FROM consent s JOIN contacts c ON c.id = s.contact_id"
                    " WHERE s.state = 'pending'"
                    " AND s.updated_at < now() - make_interval(secs => $1)"
                    " ORDER BY s.updated_at LIMIT $2",
                    float(older_than_seconds),
                    limit,
                )
        except DB_ERRORS as exc:
            raise TemporaryFailure("consent store unavailable") from exc
        return [tuple(r) for r in rows]


async def case_collision_opt_outs(pool: asyncpg.Pool) -> list[tuple[int, str, str, str]]:
    """Opt-outs of email contacts set aside by migration 011 as case collisions: (contact id,
    the contact key they fold to, sender, program), to be carried over to the key."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT c.id, lower(a.address) AS key, s.sender, s.program FROM contacts c"
            " JOIN contact_addresses a ON a.contact_id = c.id"
            " JOIN consent s ON s.contact_id = c.id AND s.channel = c.channel"
            " WHERE c.channel = 'email' AND c.address = 'case-collision:' || c.id"
            " AND s.state = 'opted_out' ORDER BY c.id, s.sender, s.program"
        )
    return [(r["id"], r["key"], r["sender"], r["program"]) for r in rows]
