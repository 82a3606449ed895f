"""The Merkle tree of checkpoints against RFC 6962's recursive definition, and its proofs."""

from __future__ import annotations

import hashlib

import pytest

from gateway.audit import merkle, receipt_verify


def _rfc6962_mth(leaves: list[bytes]) -> bytes:
    """MTH as RFC 6962 section 2.1 writes it: split at the largest power of two below n."""
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + _rfc6962_mth(leaves[:k]) + _rfc6962_mth(leaves[k:])).digest()


@pytest.mark.parametrize("size", range(1, 40))
def test_root_and_every_path_agree_with_rfc_6962(size: int) -> None:
    """The level-by-level tree is RFC 6962's, and every leaf's path verifies with both the
    builder's and the standalone verifier's RFC 9162 algorithm, at its index only."""
    leaves = [hashlib.sha256(str(i).encode()).digest() for i in range(size)]
    tree = merkle.levels(leaves)
    root = tree[-1][0]
    assert _rfc6962_mth(leaves) == root
    for index, leaf in enumerate(leaves):
        path = merkle.audit_path(tree, index)
        assert merkle.verify_path(leaf, index, size, path, root)
        assert receipt_verify.path_leads_to(leaf, index, size, path, root)
        if size > 1:
            other = (index + 1) % size
            assert not receipt_verify.path_leads_to(leaf, other, size, path, root)
            assert not receipt_verify.path_leads_to(b"x" * 32, index, size, path, root)
