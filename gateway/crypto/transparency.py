"""Key transparency formats (DESIGN §4.12): leaves, signed tree heads, and the checks on them.

Shared by the gateway (which builds them), the SDK (which checks every claimed key against them)
and `dma-gateway kt verify`. Canonical JSON is sorted keys without spaces; hashes, salts and
signatures are standard base64; a key id is the first 16 hex digits of SHA-256 of the raw
32-byte Ed25519 public key (as the audit log's).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from typing import Any

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.crypto.merkle import leaf_hash, verify_consistency, verify_inclusion

SALT_BYTES = 16
_canonical = msgspec.json.Encoder(order="sorted")


def canonical(value: Any) -> bytes:
    """Canonical JSON: keys sorted, no spaces."""
    return _canonical.encode(value)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    """Standard base64 to bytes; ValueError when it is not."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, TypeError):
        raise ValueError("not standard base64") from None


def user_commitment(salt: bytes, user_uri: str) -> str:
    """base64 SHA-256(salt || UTF-8 URI): how a leaf names its user without listing it."""
    return b64(hashlib.sha256(salt + user_uri.encode()).digest())


def leaf_data(user: str, identity_key: str, signing_key: str, version: int, at: int) -> bytes:
    """The canonical JSON of one key change, the data of its leaf."""
    return canonical(
        {
            "user": user,
            "identity_key": identity_key,
            "signing_key": signing_key,
            "version": version,
            "at": at,
        }
    )


class Leaf(msgspec.Struct, frozen=True, kw_only=True):
    """A leaf's data, decoded."""

    user: str
    identity_key: str
    signing_key: str
    version: int
    at: int


_leaf_decoder = msgspec.json.Decoder(Leaf)


def parse_leaf(data: str | bytes) -> Leaf:
    """Decode leaf data; ValueError unless it is a leaf in canonical form."""
    raw = data.encode() if isinstance(data, str) else data
    try:
        leaf = _leaf_decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a key transparency leaf: {exc}") from None
    if leaf_data(leaf.user, leaf.identity_key, leaf.signing_key, leaf.version, leaf.at) != raw:
        raise ValueError("leaf data is not in canonical form")
    return leaf


class Head(msgspec.Struct, frozen=True, kw_only=True):
    """A signed tree head."""

    tree_size: int
    root_hash: str
    timestamp: int
    key_id: str
    signature: str


def head_message(head: Head) -> bytes:
    """What a head's signature covers: the canonical JSON of its other four fields."""
    return canonical(
        {
            "tree_size": head.tree_size,
            "root_hash": head.root_hash,
            "timestamp": head.timestamp,
            "key_id": head.key_id,
        }
    )


def raw_public(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id_of(public: Ed25519PublicKey) -> str:
    return hashlib.sha256(raw_public(public)).hexdigest()[:16]


def public_key_from_b64(text: str) -> Ed25519PublicKey:
    """An Ed25519 public key from base64 of its raw 32 bytes; ValueError otherwise."""
    raw = unb64(text.strip())
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


class HeadSigner:
    """Signs tree heads with the log's Ed25519 key."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public = private.public_key()
        self.key_id = key_id_of(self.public)
        self.public_b64 = b64(raw_public(self.public))

    def sign(self, tree_size: int, root: bytes, timestamp: int) -> Head:
        unsigned = Head(
            tree_size=tree_size,
            root_hash=b64(root),
            timestamp=timestamp,
            key_id=self.key_id,
            signature="",
        )
        signature = b64(self._private.sign(head_message(unsigned)))
        return msgspec.structs.replace(unsigned, signature=signature)


def keyring(keys: list[Ed25519PublicKey]) -> dict[str, Ed25519PublicKey]:
    """Public keys by key id."""
    return {key_id_of(k): k for k in keys}


def head_problem(head: Head, keys: Mapping[str, Ed25519PublicKey]) -> str | None:
    """Why `head` is not validly signed under `keys`, or None when it is."""
    key = keys.get(head.key_id)
    if key is None:
        return f"tree head signed by unknown key {head.key_id!r}"
    try:
        key.verify(unb64(head.signature), head_message(head))
        unb64(head.root_hash)
    except (InvalidSignature, ValueError):
        return "tree head signature does not verify"
    return None


def inclusion_problem(
    user_uri: str,
    identity_key: str,
    signing_key: str,
    transparency: Mapping[str, Any],
    keys: Mapping[str, Ed25519PublicKey],
) -> tuple[str | None, Leaf | None, Head | None]:
    """Check a `transparency` answer for a bundle: (problem or None, the leaf, the head).

    The head must be signed by a known key, the leaf must commit to `user_uri` under the given
    salt and hold exactly these keys, and the inclusion proof must lead to the head's root.
    """
    try:
        head = msgspec.convert(transparency["head"], Head)
        index = int(transparency["leaf_index"])
        data = str(transparency["leaf"]).encode()
        salt = unb64(transparency["salt"])
        proof = [unb64(p) for p in transparency["inclusion_proof"]]
        leaf = parse_leaf(data)
    except (KeyError, TypeError, ValueError, msgspec.ValidationError) as exc:
        return f"malformed transparency proof: {exc}", None, None
    problem = head_problem(head, keys)
    if problem is not None:
        return problem, leaf, head
    if leaf.user != user_commitment(salt, user_uri):
        return "the log leaf commits to another user", leaf, head
    if (leaf.identity_key, leaf.signing_key) != (identity_key, signing_key):
        return "the keys handed out are not the keys the log holds for this user", leaf, head
    if not verify_inclusion(leaf_hash(data), index, head.tree_size, proof, unb64(head.root_hash)):
        return "the inclusion proof does not lead to the signed tree head", leaf, head
    return None, leaf, head


def consistency_problem(old: Head, new: Head, proof: list[str]) -> str | None:
    """Why the tree of `new` does not extend the tree of `old` (RFC 9162 §2.1.4.2), or None.

    `old` is the smaller tree; `proof` the consistency proof between the two sizes.
    """
    if new.tree_size < old.tree_size:
        return f"the log shrank from {old.tree_size} to {new.tree_size} leaves"
    if new.tree_size == old.tree_size:
        if new.root_hash != old.root_hash:
            return f"two different trees of {new.tree_size} leaves: the log was forked"
        return None
    try:
        ok = verify_consistency(
            old.tree_size, new.tree_size, unb64(old.root_hash), unb64(new.root_hash),
            [unb64(p) for p in proof],
        )  # fmt: skip
    except (ValueError, TypeError):
        ok = False
    if ok:
        return None
    return (
        f"the tree of {new.tree_size} leaves does not extend the tree of {old.tree_size} "
        "leaves seen before: its history was rewritten or forked"
    )
