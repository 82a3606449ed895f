"""Consents that lapse soon (store layer): the opted-in rows whose basis expires within a
number of days, for ``gateway consent expiring`` and ``GET /v1/consent/expiring``.

What a row's consent is, as the listing reads it (docs/rules.md, "Consent duration"):

- **basis**: the ``basis`` in the evidence of the ledger event that made the row opted_in
  (``consent.last_seq``; gateway/store/plan.py writes it from the program's sign-up), else,
  for consents recorded before the evidence named one, the program's basis in its sender
  definition now;
- **since**: when the row became opted_in (``consent.updated_at``). For an import it is the
  time the other system recorded the consent (the evidence's ``original_time``) when that
  is earlier: CASL s.10(10) counts from the purchase or inquiry, not from the day we
  learnt of it, and the earlier start is never the one that overstates a consent.

The SQL narrows the rows by ``updated_at`` to a window a little wider than the exact one
(a margin of two days covers PostgreSQL adding months in the connection's TimeZone), and
``rules.consent.expiring_within`` decides exactly. The read is one read-only REPEATABLE
READ transaction through a cursor, so the list describes one moment. It walks the opted-in
consent rows of the sender (there is no index on state or time: a report, not a hot path).
Erased and set-aside contacts are never listed, as in the exports (consent_exports.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import asyncpg

from gateway.errors import TemporaryFailure
from gateway.store.db import DB_ERRORS
from keywords.catalog import SenderCatalog
from rules.consent import expiring_within
from rules.model import Basis, Consent, Duration

if TYPE_CHECKING:
    from gateway.store.db import Connection

MAX_DAYS = 3_650  # ten years: past every shipped duration (24 months at most)
BATCH = 2_000
_MARGIN = timedelta(days=2)

_EXPIRING = """
WITH d AS (SELECT * FROM unnest($1::text[], $2::int[]) AS d(basis, months)),
     p AS (SELECT * FROM unnest($3::text[], $4::text[], $5::text[]) AS p(sender, program, basis))
SELECT s.channel, s.sender, s.program, c.address, b.basis, s.updated_at,
       CASE WHEN l.method = 'import' THEN l.evidence->>'original_time' END AS original_time
  FROM consent s
  JOIN contacts c ON c.id = s.contact_id
  JOIN ledger l ON l.seq = s.last_seq
  LEFT JOIN p ON p.sender = s.sender AND p.program = s.program
 CROSS JOIN LATERAL (SELECT coalesce(l.evidence->>'basis', p.basis) AS basis) b
  JOIN d ON d.basis = b.basis
 WHERE s.state = 'opted_in' AND ($6::text IS NULL OR s.sender = $6)
   AND s.updated_at >= $7::timestamptz - make_interval(months => d.months)
   AND (l.method = 'import' OR s.updated_at < $8::timestamptz - make_interval(months => d.months))
   AND c.address NOT LIKE 'erased:%' AND c.address NOT LIKE 'case-collision:%'
 ORDER BY s.sender, s.program, s.channel, c.address
"""


@dataclass(frozen=True, slots=True)
class ConsentScope:
    """Whose consent, for which program: the record ``expiring_within`` carries along."""

    channel: str
    sender: str
    program: str
    address: str  # the contact key (gateway/addresses.py)


@dataclass(frozen=True, slots=True)
class ExpiringConsent:
    """One opted-in consent that lapses within the window asked for."""

    channel: str
    sender: str
    program: str
    address: str
    basis: str
    since: datetime
    expires_at: datetime

    def as_json(self) -> dict[str, str]:
        """The listing's fields, times in ISO 8601."""
        return {
            "channel": self.channel,
            "sender": self.sender,
            "program": self.program,
            "address": self.address,
            "basis": self.basis,
            "since": self.since.isoformat(),
            "expires_at": self.expires_at.isoformat(),
        }


def program_bases(catalogs: Mapping[str, SenderCatalog]) -> dict[tuple[str, str], str]:
    """(sender, program) -> the basis its sign-up records, for rows whose evidence names none."""
    return {(c.sender, p.name): p.basis for c in catalogs.values() for p in c.programs}


def _since(updated_at: datetime, original_time: str | None) -> datetime:
    """The consent's start: ``updated_at``, or an import's earlier original time."""
    if original_time:
        try:
            original = datetime.fromisoformat(original_time)
        except ValueError:
            return updated_at  # not ours to guess: the evidence is kept as the file had it
        if original.tzinfo is not None and original < updated_at:
            return original
    return updated_at


def _consents(rows: list[asyncpg.Record]) -> Iterator[tuple[ConsentScope, Consent]]:
    for r in rows:
        scope = ConsentScope(r["channel"], r["sender"], r["program"], r["address"])
        yield scope, Consent(Basis(r["basis"]), _since(r["updated_at"], r["original_time"]))


async def read_expiring(
    conn: Connection,
    *,
    at: datetime,
    days: int,
    durations: Mapping[Basis, Duration],
    bases: Mapping[tuple[str, str], str],
    sender: str | None = None,
) -> list[ExpiringConsent]:
    """Every opted-in consent whose basis lapses in ``[at, at + days)``, soonest first."""
    if not 0 <= days <= MAX_DAYS:
        raise ValueError(f"days must be 0..{MAX_DAYS}")
    lasting = {b.value: d.months for b, d in durations.items() if d.months is not None}
    if not lasting or days == 0:
        return []
    programs = [(s, p, b) for (s, p), b in bases.items()]
    params = (
        list(lasting),
        list(lasting.values()),
        [s for s, _, _ in programs],
        [p for _, p, _ in programs],
        [b for _, _, b in programs],
        sender,
        at - _MARGIN,
        at + timedelta(days=days) + _MARGIN,
    )
    found: list[ExpiringConsent] = []
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        cursor = await conn.cursor(_EXPIRING, *params)
        while rows := await cursor.fetch(BATCH):
            for item in expiring_within(_consents(rows), at, days, durations):
                s, c = item.record, item.consent
                found.append(
                    ExpiringConsent(s.channel, s.sender, s.program, s.address,
                                    c.basis.value, c.since, item.expires_at)
                )  # fmt: skip
    # Each batch came sorted; the whole list is sorted once more, stably (sender order stays).
    found.sort(key=lambda e: e.expires_at)
    return found


class ConsentExpiry:
    """The listing over a pool, with the durations and the live sender catalogs."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        durations: Mapping[Basis, Duration],
        catalogs: Mapping[str, SenderCatalog],
    ) -> None:
        self._pool = pool
        self._durations = durations
        self._catalogs = catalogs  # the registry: admin changes show at the next call

    async def expiring(self, days: int, sender: str | None, at: datetime) -> list[ExpiringConsent]:
        """``read_expiring`` on a pooled connection; ``TemporaryFailure`` if unreachable."""
        try:
            async with self._pool.acquire() as conn:
                return await read_expiring(
                    conn,
                    at=at,
                    days=days,
                    durations=self._durations,
                    bases=program_bases(self._catalogs),
                    sender=sender,
                )
        except DB_ERRORS as exc:
            raise TemporaryFailure("the consent store is unavailable") from exc
