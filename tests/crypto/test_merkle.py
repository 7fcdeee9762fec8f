"""The Merkle tree against RFC 9162 §2.1's recursive definitions, for trees of 1-40 leaves."""

from __future__ import annotations

import hashlib

import pytest

from gateway.crypto.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)

SIZES = range(1, 41)
DATA = [f"leaf {i}".encode() for i in range(40)]


# -- The RFC's definitions, transcribed literally (§2.1.1, §2.1.3.1, §2.1.4.1) -------------


def mth(d: list[bytes]) -> bytes:
    n = len(d)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + mth(d[:k]) + mth(d[k:])).digest()


def path(m: int, d: list[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*path(m, d[:k]), mth(d[k:])]
    return [*path(m - k, d[k:]), mth(d[:k])]


def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [mth(d)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*subproof(m, d[:k], b), mth(d[k:])]
    return [*subproof(m - k, d[k:], False), mth(d[:k])]


def tree(n: int) -> MerkleTree:
    return MerkleTree([leaf_hash(x) for x in DATA[:n]])


def test_the_empty_tree_and_one_leaf() -> None:
    assert MerkleTree().root() == EMPTY_ROOT == mth([])
    assert tree(1).root() == hashlib.sha256(b"\x00leaf 0").digest()


@pytest.mark.parametrize("n", SIZES)
def test_root_and_every_inclusion_proof_match_the_rfc(n: int) -> None:
    t = tree(40)  # proofs of a prefix come from a bigger tree, as the log serves old heads
    root = mth(DATA[:n])
    assert t.root(n) == root
    for m in range(n):
        proof = t.inclusion_proof(m, n)
        assert proof == path(m, DATA[:n])
        assert verify_inclusion(leaf_hash(DATA[m]), m, n, proof, root)
        # The same proof does not place another leaf, or this leaf elsewhere.
        assert not verify_inclusion(leaf_hash(b"forged"), m, n, proof, root)
        if n > 1:
            assert not verify_inclusion(leaf_hash(DATA[m]), (m + 1) % n, n, proof, root)
            assert not verify_inclusion(leaf_hash(DATA[m]), m, n, proof[:-1], root)


@pytest.mark.parametrize("n", SIZES)
def test_every_consistency_proof_matches_the_rfc(n: int) -> None:
    t = tree(40)
    new_root = mth(DATA[:n])
    for m in range(1, n + 1):
        proof = t.consistency_proof(m, n)
        assert proof == subproof(m, DATA[:n], True)
        old_root = mth(DATA[:m])
        assert verify_consistency(m, n, old_root, new_root, proof)
        # A rewritten old tree (one leaf changed) is not consistent with the new one.
        rewritten = mth([b"rewritten", *DATA[1:m]])
        assert not verify_consistency(m, n, rewritten, new_root, proof)
        if m < n:
            assert not verify_consistency(m, n, old_root, mth([b"x", *DATA[1:n]]), proof)


def test_bad_sizes_are_refused() -> None:
    t = tree(5)
    with pytest.raises(ValueError):
        t.inclusion_proof(5, 5)
    with pytest.raises(ValueError):
        t.root(6)
    with pytest.raises(ValueError):
        t.consistency_proof(4, 3)
    assert t.consistency_proof(0, 5) == []
    assert not verify_consistency(4, 3, t.root(4), t.root(3), [])
    assert not verify_inclusion(leaf_hash(DATA[0]), 0, 0, [], EMPTY_ROOT)
