"""Ed25519-signed checkpoints of the hash chain, and export seals.

A checkpoint says "chain C had hash H at seq S" and is signed over the canonical JSON
(records.py) of `{at, chain_id, hash, key_id, purpose, seq}`, `purpose` being
"dma-gateway audit checkpoint v1". An export seal signs `{anchor_seq, at, chain_id, hash, key_id,
purpose, seq}` with purpose "dma-gateway audit export seal v1": the exported span of a chain,
from the anchor to its last record. Signatures and public keys are standard base64; a key id is
the first 16 hex digits of SHA-256 of the raw 32-byte public key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway import secretfiles
from gateway.service.audit.records import canonical

KEY_FILE = "audit-signing.key"
CHECKPOINT_PURPOSE = "dma-gateway audit checkpoint v1"
SEAL_PURPOSE = "dma-gateway audit export seal v1"


class Checkpoint(msgspec.Struct, frozen=True, kw_only=True):
    """A signed (chain, seq, hash); `anchor_seq` is set on export seals only."""

    chain_id: str
    seq: int
    hash: str
    at: int
    key_id: str
    signature: str
    anchor_seq: int | None = None


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id_of(public: Ed25519PublicKey) -> str:
    """The key id: first 16 hex digits of SHA-256 of the raw public key."""
    return hashlib.sha256(_raw(public)).hexdigest()[:16]


def encode_public_key(public: Ed25519PublicKey) -> str:
    """Standard base64 of the raw 32-byte key, as published in the reference offer."""
    return base64.b64encode(_raw(public)).decode()


def parse_public_key(text: str) -> Ed25519PublicKey:
    """A public key from PEM (SubjectPublicKeyInfo) or base64 of the raw 32 bytes."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_public_key(text.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("not an Ed25519 public key")
        return key
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise ValueError("not base64 or PEM") from None
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def _message(cp: Checkpoint) -> bytes:
    fields: dict[str, Any] = {
        "at": cp.at,
        "chain_id": cp.chain_id,
        "hash": cp.hash,
        "key_id": cp.key_id,
        "seq": cp.seq,
    }
    if cp.anchor_seq is None:
        fields["purpose"] = CHECKPOINT_PURPOSE
    else:
        fields["purpose"] = SEAL_PURPOSE
        fields["anchor_seq"] = cp.anchor_seq
    return canonical(fields)


class Signer:
    """The gateway's checkpoint signing key."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public = private.public_key()
        self.key_id = key_id_of(self.public)
        self.public_b64 = encode_public_key(self.public)

    def sign(
        self, chain_id: str, seq: int, hash_hex: str, at: int, *, anchor_seq: int | None = None
    ) -> Checkpoint:
        """A signed checkpoint (or, with `anchor_seq`, an export seal)."""
        unsigned = Checkpoint(
            chain_id=chain_id,
            seq=seq,
            hash=hash_hex,
            at=at,
            key_id=self.key_id,
            signature="",
            anchor_seq=anchor_seq,
        )
        signature = base64.b64encode(self._private.sign(_message(unsigned))).decode()
        return msgspec.structs.replace(unsigned, signature=signature)

    def public_pem(self) -> str:
        return self.public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()


def load_signer(data_dir: Path, *, create: bool = True) -> Signer | None:
    """The signer on <data_dir>/audit-signing.key (PKCS#8 PEM, 0600), made on first start."""
    path = data_dir / KEY_FILE
    if not create and not path.exists():
        return None

    def make() -> bytes:
        return Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    pem, _ = secretfiles.load_or_create(path, make)
    private = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(private, Ed25519PrivateKey):
        raise ValueError(f"{path} does not hold an Ed25519 private key")
    return Signer(private)


def keyring(keys: Iterable[Ed25519PublicKey]) -> dict[str, Ed25519PublicKey]:
    """Public keys by key id."""
    return {key_id_of(key): key for key in keys}


def signature_problem(cp: Checkpoint, keys: Mapping[str, Ed25519PublicKey]) -> str | None:
    """Why `cp`'s signature is not good under `keys`, or None when it is."""
    key = keys.get(cp.key_id)
    if key is None:
        return f"signed by unknown key {cp.key_id!r} (forged, or re-signed with another key)"
    try:
        key.verify(base64.b64decode(cp.signature, validate=True), _message(cp))
    except (InvalidSignature, binascii.Error, ValueError):
        return "signature does not verify (forged or altered)"
    return None
