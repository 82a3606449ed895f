"""Merkle trees over ledger hashes (pure layer), as RFC 6962 section 2.1 defines them.

A signed checkpoint commits to the events it covers through one root; a receipt carries, for
each of the person's events, the audit path from that event's hash to the root (RFC 6962
section 2.1.1), so it proves membership without revealing anyone else's events. Leaves are
hashed with a 0x00 prefix and nodes with 0x01, so a node can never pass for a leaf.

The tree is built level by level, pairing from the left and carrying an unpaired last node up
unchanged: this is the same tree as RFC 6962's split at the largest power of two below n
(tests/audit/test_audit_merkle.py checks both against each other).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962: MTH({d}) = SHA-256(0x00 || d)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """Every level of the tree, leaf hashes first, the root's level (one node) last."""
    if not leaves:
        raise ValueError("a tree needs at least one leaf")
    level = [leaf_hash(d) for d in leaves]
    out = [level]
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])  # the unpaired node goes up as it is
        out.append(nxt)
        level = nxt
    return out


def root(leaves: Sequence[bytes]) -> bytes:
    """The Merkle tree hash of ``leaves``."""
    return levels(leaves)[-1][0]


def audit_path(tree: list[list[bytes]], index: int) -> list[bytes]:
    """The sibling hashes from leaf ``index`` up to the root (RFC 6962 section 2.1.1)."""
    if not 0 <= index < len(tree[0]):
        raise IndexError("leaf index outside the tree")
    path: list[bytes] = []
    for level in tree[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            path.append(level[sibling])
        index //= 2
    return path


def verify_path(leaf: bytes, index: int, size: int, path: Sequence[bytes], expected: bytes) -> bool:
    """True when ``path`` leads from ``leaf`` (unhashed data) at ``index`` of a tree of
    ``size`` leaves to ``expected``: the algorithm of RFC 9162 section 2.1.3.2."""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    r = leaf_hash(leaf)
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == expected
