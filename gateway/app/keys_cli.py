"""``gateway keys`` (I/O layer): create, list and revoke API keys from the command line.

``create`` prints the key once (only its SHA-256 is stored) and warns on stderr when a live
key already has the name; ``list`` shows each key's last use, to the minute; ``revoke`` takes
effect on every instance at once (NOTIFY) and at the latest after the short verification
cache expires.
Every action is recorded in the audit log with the actor ``cli``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gateway.settings import Settings
from gateway.store.db import create_pool, embedded_postgres
from gateway.store.keys import SCOPES, ApiKeys


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``keys`` command and its subcommands."""
    keys = sub.add_parser("keys", help="create, list and revoke API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key and print it once")
    create.add_argument("--name", required=True, help="who or what uses the key")
    create.add_argument(
        "--scopes", required=True, help=f"comma-separated, from: {', '.join(SCOPES)}"
    )
    keys_sub.add_parser("list", help="list keys (never the secrets)")
    revoke = keys_sub.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")


async def run(settings: Settings, args: argparse.Namespace) -> int:
    """Carry out one ``keys`` subcommand; 0 on success."""

    async def with_dsn(dsn: str) -> int:
        pool = await create_pool(dsn, settings.database)
        try:
            store = ApiKeys(pool, channel=f"{settings.database.schema}_api")
            if args.keys_command == "create":
                scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
                same_name = await store.live_keys_named(args.name)
                try:
                    key_id, key = await store.create_key(args.name, scopes, actor="cli")
                except ValueError as exc:
                    print(f"gateway: {exc}")
                    return 2
                if same_name:
                    # Created all the same (a rotation makes the new key before revoking the
                    # old), but on stderr, so the JSON on stdout stays one object.
                    print(
                        f"gateway: warning: {len(same_name)} other live key(s) named"
                        f" {args.name!r}: {', '.join(same_name)}; revoke the old one once"
                        " its users have the new key (`gateway keys revoke ID`)",
                        file=sys.stderr,
                    )
                print(json.dumps({"id": key_id, "key": key, "scopes": sorted(set(scopes))}))
                return 0
            if args.keys_command == "list":
                print(json.dumps(await store.list_keys(), indent=2))
                return 0
            if await store.revoke_key(args.key_id, actor="cli"):
                print(json.dumps({"revoked": args.key_id}))
                return 0
            print(f"gateway: no live key {args.key_id!r}")
            return 1
        finally:
            await pool.close()

    if settings.database_url is not None:
        return await with_dsn(settings.database_url)
    settings.require_embedded_allowed()
    async with embedded_postgres(Path(settings.database.embedded_data_dir)) as dsn:
        return await with_dsn(dsn)
