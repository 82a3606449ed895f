"""Offline check of a consent receipt (standalone: the standard library and ``cryptography``).

This file imports nothing else from the gateway, so it can be copied out and run anywhere:

    python receipt_verify.py receipt.json --public-key <hex>

It re-derives what the receipt claims, in the steps docs/receipts.md describes:

1. each event's hash from its fields and ``prev_hash``, exactly as the ledger chains them
   (canonical JSON, SHA-256: gateway/store/ledger.py);
2. each event's evidence against its digest (evidence removed by an erasure is counted,
   not failed: its digest is still in the chain);
3. each event's audit path up to the Merkle root of the checkpoint that covers it (RFC 6962
   section 2.1, verified as RFC 9162 section 2.1.3.2 says);
4. each checkpoint's Ed25519 signature over its statement (RFC 8032), with a public key the
   reader trusts when ``--public-key`` is given;
5. that each current state the receipt lists rests on an event it shows.

Any ledger row altered after it was checkpointed changes its hash (step 1 fails if the stored
hash was left, step 3 if it was recomputed); a row altered before has no checkpoint, because
the gateway re-derives the chain before it signs. Exit status 0: every check passed; 1: a
problem, listed in the JSON printed; 2: the file is not a receipt.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

FORMAT = "consent-receipt/1"
STATEMENT_FORMAT = "ledger-checkpoint/1"
_CHAINED = (
    "seq",
    "contact_id",
    "channel",
    "sender",
    "program",
    "action",
    "method",
    "old_state",
    "new_state",
    "server_time",
    "carrier_time",
    "inbound_id",
)


def event_hash(event: Mapping[str, Any]) -> str:
    """The hex SHA-256 chain link of one event, from the fields the receipt gives."""
    fields: list[Any] = [event["prev_hash"]]
    fields += [event[name] for name in _CHAINED]
    fields.append(event["evidence_sha256"])
    text = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def evidence_sha256(evidence: Mapping[str, Any]) -> str:
    """The hex digest of evidence in its canonical form (keys sorted, no spaces)."""
    text = json.dumps(evidence, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def path_leads_to(leaf: bytes, index: int, size: int, path: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 section 2.1.3.2: does ``path`` lead from ``leaf`` at ``index`` to ``root``?"""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, _leaf(leaf)
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _node(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def _signature_ok(public_key: bytes, signature: bytes, statement: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, statement)
    except (InvalidSignature, ValueError):
        return False
    return True


def _checkpoints(
    receipt: Mapping[str, Any], trusted: set[str] | None, problems: list[str]
) -> dict[int, dict[str, Any]]:
    """The checkpoints whose signature holds, parsed, by id."""
    good: dict[int, dict[str, Any]] = {}
    for cp in receipt.get("checkpoints", []):
        ident = cp.get("id")
        try:
            public_key = bytes.fromhex(cp["public_key"])
            signature = bytes.fromhex(cp["signature"])
            statement = cp["statement"]
            parsed = json.loads(statement)
        except (KeyError, TypeError, ValueError):
            problems.append(f"checkpoint {ident}: malformed")
            continue
        if parsed.get("format") != STATEMENT_FORMAT:
            problems.append(f"checkpoint {ident}: not a {STATEMENT_FORMAT} statement")
            continue
        if trusted is not None and cp["public_key"].lower() not in trusted:
            problems.append(f"checkpoint {ident}: signed with a key that is not trusted")
            continue
        if not _signature_ok(public_key, signature, statement.encode()):
            problems.append(f"checkpoint {ident}: the signature does not match its statement")
            continue
        good[int(ident)] = parsed
    return good


def verify(receipt: Mapping[str, Any], trusted_keys: Sequence[str] = ()) -> dict[str, Any]:
    """Check ``receipt``; the result as the command prints it."""
    problems: list[str] = []
    if receipt.get("format") != FORMAT:
        return {"ok": False, "events": 0, "redacted": 0, "problems": [f"not a {FORMAT}"]}
    trusted = {k.lower() for k in trusted_keys} or None
    checkpoints = _checkpoints(receipt, trusted, problems)
    contact_id = receipt.get("contact", {}).get("id")
    events = receipt.get("events", [])
    redacted = 0
    for event in events:
        seq = event.get("seq")
        try:
            derived = event_hash(event)
        except (KeyError, TypeError):
            problems.append(f"seq {seq}: fields missing")
            continue
        if event.get("contact_id") != contact_id:
            problems.append(f"seq {seq}: an event of another contact")
        if derived != event.get("hash"):
            problems.append(f"seq {seq}: its fields do not give its hash (altered)")
        evidence = event.get("evidence")
        if evidence is None:
            redacted += 1
        elif evidence_sha256(evidence) != event.get("evidence_sha256"):
            problems.append(f"seq {seq}: its evidence does not match its digest (altered)")
        proof = event.get("proof")
        if not proof:
            problems.append(f"seq {seq}: not covered by a signed checkpoint")
            continue
        cp = checkpoints.get(proof.get("checkpoint"))
        if cp is None:
            problems.append(f"seq {seq}: its checkpoint is missing or not verified")
            continue
        first, last = cp["first_seq"], cp["last_seq"]
        if not (first <= seq <= last and proof.get("index") == seq - first):
            problems.append(f"seq {seq}: outside the range its checkpoint covers")
            continue
        try:
            path = [bytes.fromhex(p) for p in proof["path"]]
            ok = path_leads_to(
                bytes.fromhex(derived), seq - first, last - first + 1, path,
                bytes.fromhex(cp["root"]),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            problems.append(f"seq {seq}: not in the chain its checkpoint signed (altered)")
        if seq == last and derived != cp["head"]:
            problems.append(f"seq {seq}: differs from the head its checkpoint signed")
    shown = {e.get("seq") for e in events}
    for state in receipt.get("consent", []):
        if state.get("last_seq") not in shown:
            problems.append(
                f"consent {state.get('sender')}/{state.get('program')}: its last event"
                f" (seq {state.get('last_seq')}) is not in the receipt"
            )
    return {
        "ok": not problems,
        "events": len(events),
        "redacted": redacted,
        "checkpoints": sorted(checkpoints),
        "key_ids": sorted({str(cp.get("key_id")) for cp in checkpoints.values()}),
        "problems": problems,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python receipt_verify.py FILE [--public-key HEX ...]``."""
    parser = argparse.ArgumentParser(description="Check a consent receipt offline.")
    parser.add_argument("file", help="the receipt (JSON)")
    parser.add_argument(
        "--public-key",
        action="append",
        default=[],
        help="a trusted Ed25519 public key, hex (repeat for older keys); without it the"
        " receipt's own keys are used, which proves integrity but not who signed",
    )
    args = parser.parse_args(argv)
    try:
        with open(args.file, encoding="utf-8") as handle:
            receipt = json.load(handle)
    except (OSError, ValueError) as exc:
        print(f"receipt_verify: {args.file}: {exc}", file=sys.stderr)
        return 2
    if not isinstance(receipt, dict):
        print(f"receipt_verify: {args.file}: not a JSON object", file=sys.stderr)
        return 2
    result = verify(receipt, args.public_key)
    print(json.dumps(result, indent=2))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
