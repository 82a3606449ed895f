"""A consent receipt per person (pure layer): their events with evidence, and the proof.

Built from the rows gateway/store/receipts_chain.py reads. Every field the chain hashes is
written exactly as it was hashed (times in ``datetime.isoformat()``, hashes in hex), so
gateway/audit/receipt_verify.py can re-derive each link without a database. What is not in
the chain (the inbound text's record, the review finding, the current state) is carried for
reading and marked so: docs/receipts.md says which fields are proven and which are not.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from gateway.audit.receipt_verify import FORMAT


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _hex(value: bytes | memoryview) -> str:
    return bytes(value).hex()


def build_receipt(rows: Mapping[str, Any], generated_at: datetime) -> dict[str, Any]:
    """The receipt document of one contact."""
    inbound = {r["id"]: r for r in rows["inbound"]}
    reviews = {r["inbound_id"]: r for r in rows["reviews"]}
    proofs = rows["proofs"]
    events = []
    for r in rows["ledger"]:
        proof = proofs.get(r["seq"])
        source = inbound.get(r["inbound_id"])
        review = reviews.get(r["inbound_id"])
        events.append(
            {
                "seq": r["seq"],
                "contact_id": r["contact_id"],
                "channel": r["channel"],
                "sender": r["sender"],
                "program": r["program"],
                "action": r["action"],
                "method": r["method"],
                "old_state": r["old_state"],
                "new_state": r["new_state"],
                "server_time": _iso(r["server_time"]),
                "carrier_time": _iso(r["carrier_time"]),
                "inbound_id": r["inbound_id"],
                "evidence": None if r["evidence"] is None else json.loads(r["evidence"]),
                "evidence_sha256": _hex(r["evidence_sha256"]),
                "prev_hash": _hex(r["prev_hash"]),
                "hash": _hex(r["hash"]),
                "proof": None
                if proof is None
                else {
                    "checkpoint": proof[0],
                    "index": proof[1],
                    "path": [_hex(p) for p in proof[2]],
                },
                # Not chained: the record of what arrived, and an operator's later finding.
                "received": None
                if source is None
                else {
                    "received_at": _iso(source["received_at"]),
                    "intent": source["intent"],
                    "match": source["match"],
                    "needs_review": source["needs_review"],
                    "text": source["body"],
                },
                "review": None
                if review is None
                else {
                    "decision": review["decision"],
                    "note": review["note"],
                    "actor": review["actor"],
                    "decided_at": _iso(review["decided_at"]),
                    "head_seq": review["head_seq"],
                    "head_hash": _hex(review["head_hash"]),
                },
            }
        )
    contact = rows["contact"]
    return {
        "format": FORMAT,
        "generated_at": generated_at.isoformat(),
        "contact": {
            "id": contact["id"],
            "channel": contact["channel"],
            "address": contact["address"],
            "created_at": _iso(contact["created_at"]),
        },
        "consent": [
            {
                "sender": c["sender"],
                "program": c["program"],
                "state": c["state"],
                "since": _iso(c["updated_at"]),
                "last_seq": c["last_seq"],
            }
            for c in rows["consent"]
        ],
        "events": events,
        "checkpoints": rows["checkpoints"],
        "how_to_verify": "docs/receipts.md: gateway audit verify-receipt FILE --public-key KEY",
    }
