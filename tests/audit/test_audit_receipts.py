"""Consent receipts: every event of one person, proven offline to a signed checkpoint, and the
proof fails once a ledger row is altered in PostgreSQL (docs/receipts.md)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from audit_http import call, new_key, opt_in_body
from support import ROOT, SECRET, sms

from gateway.app import Gateway
from gateway.audit import receipt_verify
from gateway.audit.signing import CheckpointSigner
from gateway.store.ledger import LedgerEvent, event_hash
from gateway.store.receipts_chain import ChainBroken

PUBLIC_KEY = CheckpointSigner.from_secret(SECRET.encode()).public_key.hex()
NUMBER = "+14155550123"


async def _history(gateway: Gateway) -> tuple[str, int]:
    """An opt-in by web form, a flagged STOP, a HELP and someone else's events between."""
    key = await new_key(gateway, "admin")
    status, _ = await call(gateway, "POST", "/v1/consent", key=key, json=opt_in_body(NUMBER, "a"))
    assert 200 == status
    await call(gateway, "POST", "/v1/consent", key=key, json=opt_in_body("+14155550999", "b"))
    await gateway.pipeline.handle(sms("stop please", contact=NUMBER))
    await gateway.pipeline.handle(sms("START", contact="+14155550999"))
    await gateway.pipeline.handle(sms("HELP", contact=NUMBER))
    contact_id = await gateway.api.audit.chain.contact_id("sms", NUMBER)
    assert contact_id is not None
    return key, contact_id


async def _receipt(gateway: Gateway, key: str, contact_id: int, path: Path) -> dict[str, Any]:
    status, document = await call(gateway, "GET", f"/v1/contacts/{contact_id}/receipt", key=key)
    assert 200 == status
    await asyncio.to_thread(path.write_text, json.dumps(document), encoding="utf-8")
    assert isinstance(document, dict)
    return document


async def _tamper(db: asyncpg.Connection, sql: str, *args: object) -> None:
    """What an operator with table rights could do, trigger and all."""
    await db.execute("ALTER TABLE ledger DISABLE TRIGGER ledger_append_only")
    await db.execute(sql, *args)
    await db.execute("ALTER TABLE ledger ENABLE TRIGGER ledger_append_only")


async def test_receipt_verifies_offline_and_fails_after_a_row_is_altered(
    gateway: Gateway, db: asyncpg.Connection, tmp_path: Path
) -> None:
    """Untouched: every event verifies with the standalone file copied out of the package;
    after one of the person's rows is altered in place, a new receipt fails."""
    key, contact_id = await _history(gateway)
    document = await _receipt(gateway, key, contact_id, tmp_path / "r.json")
    # STOP leaves every program, the one never joined included (kept as a suppression).
    assert [
        ("reminders", "opt_in", "web_form"),
        ("reminders", "opt_out", "sms_keyword"),
        ("flu", "opt_out", "sms_keyword"),
    ] == [(e["program"], e["action"], e["method"]) for e in document["events"]]
    assert "2026-01" == document["events"][0]["evidence"]["disclosure_version"]
    assert "stop please" == document["events"][1]["received"]["text"]
    assert all(e["proof"] for e in document["events"])
    assert {e["contact_id"] for e in document["events"]} == {contact_id}

    # The verifier stands alone: copied out of the repository, run with no gateway around.
    alone = tmp_path / "receipt_verify.py"
    shutil.copy(ROOT / "gateway" / "audit" / "receipt_verify.py", alone)
    run = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-I", str(alone), str(tmp_path / "r.json"), "--public-key", PUBLIC_KEY],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert 0 == run.returncode, run.stdout
    assert json.loads(run.stdout)["ok"]

    stop_seq = document["events"][1]["seq"]
    await _tamper(db, "UPDATE ledger SET new_state = 'opted_in' WHERE seq = $1", stop_seq)
    await _receipt(gateway, key, contact_id, tmp_path / "altered.json")
    assert 1 == receipt_verify.main([str(tmp_path / "altered.json"), "--public-key", PUBLIC_KEY])
    result = receipt_verify.verify(json.loads((tmp_path / "altered.json").read_text()))
    assert [
        f"seq {stop_seq}: its fields do not give its hash (altered)",
        f"seq {stop_seq}: not in the chain its checkpoint signed (altered)",
    ] == result["problems"]


async def test_a_rewritten_hash_does_not_pass_the_signed_root(
    gateway: Gateway, db: asyncpg.Connection, tmp_path: Path
) -> None:
    """An alteration that also recomputes the row's hash (the chain looks whole) still fails:
    the checkpoint signed the old hash's place in its Merkle root."""
    key, contact_id = await _history(gateway)
    document = await _receipt(gateway, key, contact_id, tmp_path / "r.json")
    event = document["events"][1]
    row = await db.fetchrow("SELECT * FROM ledger WHERE seq = $1", event["seq"])
    assert row is not None
    forged = event_hash(
        bytes(row["prev_hash"]),
        LedgerEvent(
            row["seq"], row["contact_id"], row["channel"], row["sender"], row["program"],
            row["action"], row["method"], row["old_state"], "opted_in", row["server_time"],
            row["carrier_time"], row["inbound_id"], bytes(row["evidence_sha256"]),
        ),
    )  # fmt: skip
    await _tamper(
        db, "UPDATE ledger SET new_state = 'opted_in', hash = $2 WHERE seq = $1", row["seq"], forged
    )
    altered = await _receipt(gateway, key, contact_id, tmp_path / "altered.json")
    result = receipt_verify.verify(altered, [PUBLIC_KEY])
    assert not result["ok"]
    assert (
        f"seq {row['seq']}: not in the chain its checkpoint signed (altered)" in result["problems"]
    )


async def test_another_key_and_a_missing_proof_fail(gateway: Gateway, tmp_path: Path) -> None:
    """A receipt is only as good as the key the reader trusts, and every event needs a proof."""
    key, contact_id = await _history(gateway)
    document = await _receipt(gateway, key, contact_id, tmp_path / "r.json")
    assert receipt_verify.verify(document, [PUBLIC_KEY])["ok"]
    other = CheckpointSigner.from_secret(b"another-secret-that-is-long-enough-0000").public_key
    assert not receipt_verify.verify(document, [other.hex()])["ok"]
    document["events"][0]["proof"] = None
    assert ["seq 1: not covered by a signed checkpoint"] == receipt_verify.verify(document)[
        "problems"
    ]


async def test_the_data_subject_export_carries_the_receipt(gateway: Gateway) -> None:
    """Art. 15's export holds the same receipt, and it verifies."""
    key, _ = await _history(gateway)
    status, data = await call(
        gateway, "POST", "/v1/privacy/export", key=key, json={"channel": "sms", "contact": NUMBER}
    )
    assert 200 == status
    assert receipt_verify.verify(data["receipt"], [PUBLIC_KEY])["ok"]
    assert len(data["ledger"]) == len(data["receipt"]["events"])


async def test_checkpoints_refuse_a_broken_chain(gateway: Gateway, db: asyncpg.Connection) -> None:
    """Rows altered before they were checkpointed are never signed."""

    await gateway.pipeline.handle(sms("START"))
    signed = (await gateway.api.audit.chain.checkpoint_all())[-1].last_seq
    await gateway.pipeline.handle(sms("STOP"))
    seq = await db.fetchval("SELECT max(seq) FROM ledger")
    await _tamper(db, "UPDATE ledger SET method = 'api' WHERE seq = $1", seq)
    with pytest.raises(ChainBroken) as broken:
        await gateway.api.audit.chain.checkpoint_all()
    assert [f"seq {seq}: contents do not match the stored hash (altered)"] == broken.value.problems
    assert signed == await db.fetchval("SELECT max(last_seq) FROM ledger_checkpoints")
