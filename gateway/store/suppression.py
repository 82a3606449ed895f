"""The suppression list (store layer): keyed hashes of erased addresses, under every key held.

An erased person (GDPR art. 17) stays here as an HMAC of their address, never the address,
so they are never messaged again; the gate, every capture path (the writer) and rectify ask.
The hashes must outlive the rotation of any key (README "Keys and rotation"):

- each row names the key it was made with by a fingerprint (``key_id``), never the key;
- an erasure stores its address under *every* key held, as one ``entry``: once every
  instance holds a newer key, dropping an older one loses nothing recorded since;
- a check tries every key held (and, for email, the spelling keyed before migration 011,
  whose hashes cannot be recomputed);
- at start-up the gateway refuses to run while an entry has no row under a key it holds:
  that person could otherwise be messaged again (``Suppression.prepare``).

Only the person's own fresh opt-in lifts an entry, in the writer's transaction
(``lift``; README "Data-subject rights").
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import TYPE_CHECKING

import asyncpg

from gateway.errors import ConfigError

if TYPE_CHECKING:
    from gateway.store.db import Connection


def key_id(key: bytes) -> str:
    """A key's fingerprint: names it in the table without revealing it."""
    return hmac.digest(key, b"consent-gateway/key-id", "sha256")[:8].hex()


class Suppression:
    """The hashing keys, and the table's hashes held in memory for the gate (reloaded on
    NOTIFY)."""

    def __init__(
        self, keys: Sequence[bytes], *, adopt: bytes | None = None, notify_channel: str = ""
    ) -> None:
        if not keys:
            raise ConfigError("the suppression list needs at least one key")
        # Keys listed twice (a previous secret equal to the current one) are hashed once.
        unique = {key_id(k): k for k in keys}
        self.keys: tuple[tuple[str, bytes], ...] = tuple(unique.items())
        # Rows from before key ids (migration 011) were made with this key.
        self.adopt_id = key_id(adopt if adopt is not None else keys[0])
        self.notify_channel = notify_channel
        self._hashes: frozenset[bytes] = frozenset()

    def digests(
        self, channel: str, address: str, legacy: str | None = None
    ) -> list[tuple[str, bytes]]:
        """(key id, HMAC-SHA256) of a contact key under every key held, and of its legacy
        spelling when it differs."""
        forms = [address] if legacy is None or legacy == address else [address, legacy]
        return [
            (kid, hmac.digest(key, f"{channel}:{form}".encode(), "sha256"))
            for kid, key in self.keys
            for form in forms
        ]

    def digest(self, channel: str, address: str) -> bytes:
        """The hash under the first key (tests and tools)."""
        return self.digests(channel, address)[0][1]

    def contains(self, channel: str, address: str, legacy: str | None = None) -> bool:
        """True if ``address`` was erased (the gate's check; no I/O)."""
        hashes = self._hashes
        if not hashes:
            return False
        # Not any(d in hashes ...): a generator naming ``hashes`` makes it a closure cell,
        # created on every call, also the early return above (the gate calls this for each
        # allowed recipient).
        return not hashes.isdisjoint([d for _, d in self.digests(channel, address, legacy)])

    async def load(self, pool: asyncpg.Pool) -> None:
        """Replace the in-memory set with the table's contents."""
        async with pool.acquire() as conn:
            rows = await conn.fetch("SELECT address_hmac FROM suppression")
        self._hashes = frozenset(bytes(r["address_hmac"]) for r in rows)

    def add(self, digests: Sequence[bytes]) -> None:
        """Remember more hashes at once (this instance's own erasure)."""
        self._hashes = self._hashes | set(digests)

    def discard(self, digests: Sequence[bytes]) -> None:
        """Forget lifted hashes at once (this instance's writer; the NOTIFY tells the rest)."""
        self._hashes = self._hashes - set(digests)

    async def prepare(self, pool: asyncpg.Pool) -> None:
        """Adopt rows without a key id, then refuse to start if an entry has no key held."""
        held = [kid for kid, _ in self.keys]
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE suppression SET key_id = $1 WHERE key_id IS NULL", self.adopt_id
            )
            lost = await conn.fetch(
                "SELECT s.key_id, count(DISTINCT s.entry) AS entries FROM suppression s"
                " WHERE NOT EXISTS (SELECT 1 FROM suppression t WHERE t.entry = s.entry"
                " AND t.key_id = ANY($1::text[])) GROUP BY s.key_id ORDER BY s.key_id",
                held,
            )
        if lost:
            missing = ", ".join(f"{r['entries']} under key id {r['key_id']}" for r in lost)
            raise ConfigError(
                f"the suppression list holds erased addresses ({missing}) that no key of this"
                " instance can match: set GATEWAY_PREVIOUS_SECRET_KEYS to the secret they were"
                " made with (or GATEWAY_SUPPRESSION_KEYS to their key); held key ids:"
                f" {', '.join(held)} (README: Keys and rotation)"
            )


async def add_entry(
    conn: Connection, channel: str, digests: Sequence[tuple[str, bytes]], reason: str
) -> None:
    """One erased address, hashed under every key held, as one entry."""
    await conn.execute(
        "WITH e AS (SELECT nextval('suppression_entry_seq') AS entry)"
        " INSERT INTO suppression (channel, address_hmac, reason, key_id, entry)"
        " SELECT $1, u.h, $4, u.k, e.entry FROM unnest($2::text[], $3::bytea[]) AS u(k, h), e"
        " ON CONFLICT DO NOTHING",
        channel,
        [k for k, _ in digests],
        [d for _, d in digests],
        reason,
    )


async def suppressed_among(conn: Connection, probes: Sequence[tuple[str, bytes, int]]) -> set[int]:
    """Which of the (channel, hash, index) probes are on the list: their indexes.

    One index probe per hash (LATERAL ... OFFSET 0), whatever plan the statement has
    (tests/store/test_store_plans.py explains why the writer's reads are written so).
    """
    rows = await conn.fetch(
        "SELECT DISTINCT u.i FROM unnest($1::text[], $2::bytea[], $3::int[]) AS u(ch, h, i)"
        " CROSS JOIN LATERAL (SELECT 1 FROM suppression s WHERE s.channel = u.ch"
        " AND s.address_hmac = u.h OFFSET 0) AS k",
        [p[0] for p in probes],
        [p[1] for p in probes],
        [p[2] for p in probes],
    )
    return {r["i"] for r in rows}


async def lift(conn: Connection, channel: str, digests: Sequence[bytes]) -> list[bytes]:
    """Remove the entries these hashes belong to, under every key; the hashes removed."""
    rows = await conn.fetch(
        "WITH hit AS (SELECT DISTINCT entry FROM suppression"
        " WHERE channel = $1 AND address_hmac = ANY($2::bytea[]))"
        " DELETE FROM suppression s USING hit WHERE s.entry = hit.entry RETURNING s.address_hmac",
        channel,
        list(digests),
    )
    return [bytes(r["address_hmac"]) for r in rows]
