"""RFC 9162 §2.1 Merkle tree: tree hashes, inclusion and consistency proofs, and their checks.

Hand-written rather than a dependency: the log's leaves live in the gateway's own tables and are
appended inside the key change's transaction, which the Merkle libraries on PyPI (each with its
own storage) do not allow; the algorithms are short and tested against the RFC's definitions
for every leaf and every pair of sizes up to 40 (tests/crypto/test_merkle.py).

`MerkleTree` keeps the hashes of complete, aligned subtrees (they never change once full), so a
proof of a tree of n leaves costs O(log² n) hashes after the first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 || data): the hash of one leaf (RFC 9162 §2.1.1)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right): an interior node."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleTree:
    """The tree over an append-only list of leaf hashes."""

    def __init__(self, leaves: Sequence[bytes] = ()) -> None:
        self.leaves: list[bytes] = list(leaves)
        self._complete: dict[tuple[int, int], bytes] = {}

    def __len__(self) -> int:
        return len(self.leaves)

    def append(self, hash_: bytes) -> None:
        self.leaves.append(hash_)

    def _mth(self, start: int, n: int) -> bytes:
        """MTH(D[start:start+n])."""
        if n == 1:
            return self.leaves[start]
        complete = n & (n - 1) == 0
        if complete:
            cached = self._complete.get((start, n))
            if cached is not None:
                return cached
        k = split_point(n)
        value = node_hash(self._mth(start, k), self._mth(start + k, n - k))
        if complete:
            self._complete[(start, n)] = value
        return value

    def root(self, size: int | None = None) -> bytes:
        """The root hash of the first `size` leaves (all by default)."""
        size = len(self.leaves) if size is None else size
        self._check_size(size)
        return EMPTY_ROOT if size == 0 else self._mth(0, size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """PATH(index, D[size]) (RFC 9162 §2.1.3.1)."""
        self._check_size(size)
        if not 0 <= index < size:
            raise ValueError("leaf index outside the tree")
        proof: list[bytes] = []
        start, n, m = 0, size, index
        while n > 1:
            k = split_point(n)
            if m < k:
                proof.append(self._mth(start + k, n - k))
                n = k
            else:
                proof.append(self._mth(start, k))
                start, n, m = start + k, n - k, m - k
        proof.reverse()
        return proof

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        """PROOF(old, D[new]) (RFC 9162 §2.1.4.1); empty when old is 0 or equal to new."""
        self._check_size(new)
        if not 0 <= old <= new:
            raise ValueError("the old size must be between 0 and the new size")
        if old in (0, new):
            return []
        proof: list[bytes] = []
        start, n, m, whole = 0, new, old, True
        while m != n:
            k = split_point(n)
            if m <= k:
                proof.append(self._mth(start + k, n - k))
                n = k
            else:
                proof.append(self._mth(start, k))
                start, n, m, whole = start + k, n - k, m - k, False
        if not whole:
            proof.append(self._mth(start, n))
        proof.reverse()
        return proof

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= len(self.leaves):
            raise ValueError(f"the tree has {len(self.leaves)} leaves, not {size}")


def root_of(leaves: Sequence[bytes]) -> bytes:
    """The root hash of a list of leaf hashes."""
    return MerkleTree(leaves).root()


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Whether `proof` shows leaf hash `leaf` at `index` of the tree `root` (RFC 9162 §2.1.3.2)."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Whether `proof` shows tree `new_root` extends tree `old_root` (RFC 9162 §2.1.4.2)."""
    if not 0 <= old_size <= new_size:
        return False
    if old_size == 0:
        return not proof  # every tree extends the empty one
    if old_size == new_size:
        return not proof and old_root == new_root
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root starts the path
        path.insert(0, old_root)
    if not path:
        return False
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root
