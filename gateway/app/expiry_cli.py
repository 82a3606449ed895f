"""``gateway consent expiring --days N [--sender S]`` (I/O layer): the opted-in consents whose
basis lapses within N days, soonest first, as JSON lines on stdout (one consent a line:
channel, sender, program, address, basis, since, expires_at), and their count on stderr.

Read-only: it connects to an existing schema (``connect_existing``) and never creates a
cluster, schema or table, nor applies a migration, as ``audit verify`` does (README,
"Read-only commands never create a database"). The bases fall back to the sender files'
for consents recorded before the ledger evidence named one (gateway/store/consent_expiry.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from gateway.app.expiry_wiring import load_durations
from gateway.errors import ConfigError
from gateway.settings import Settings
from gateway.store.consent_expiry import MAX_DAYS, program_bases, read_expiring
from gateway.store.db import connect_existing, existing_dsn
from keywords.loading import load_catalogs


def _days(text: str) -> int:
    """``--days``: a whole number 0..MAX_DAYS, ASCII digits only."""
    if not (text.isascii() and text.isdigit()) or len(text) > 4 or int(text) > MAX_DAYS:
        raise argparse.ArgumentTypeError(f"must be a whole number 0..{MAX_DAYS}")
    return int(text)


def add_parser(consent_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``expiring`` subcommand of ``gateway consent``."""
    cmd = consent_sub.add_parser(
        "expiring", help="opted-in consents whose basis lapses within N days, as JSON lines"
    )
    cmd.add_argument("--days", type=_days, required=True, help=f"0..{MAX_DAYS}")
    cmd.add_argument("--sender", help="one sender only")


async def run(settings: Settings, args: argparse.Namespace) -> int:
    """Print the listing; 0 on success (an empty list included)."""
    catalogs = load_catalogs(settings.senders_dir)
    if args.sender is not None and args.sender not in catalogs:
        raise ConfigError(f"unknown sender {args.sender!r}")
    durations = load_durations(settings)
    async with existing_dsn(settings) as dsn:
        conn = await connect_existing(dsn, settings.database)  # refuses a missing ledger
        try:
            found = await read_expiring(
                conn,
                at=datetime.now(UTC),
                days=args.days,
                durations=durations,
                bases=program_bases(catalogs),
                sender=args.sender,
            )
        finally:
            await conn.close()
    out = sys.stdout
    for item in found:
        out.write(json.dumps(item.as_json(), ensure_ascii=False) + "\n")
    out.flush()
    print(f"gateway: {len(found)} consent(s) lapse within {args.days} days", file=sys.stderr)
    return 0
