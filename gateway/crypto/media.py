"""Encrypted media: AES-256-GCM with a fresh key per file; the gateway stores only ciphertext.

The key, nonce and SHA-256 of the ciphertext travel inside the Olm message as a MIMI
ExternalPart (draft-ietf-mimi-content §"External Content"), never to the gateway.
"""

from __future__ import annotations

import hashlib
import hmac
import os

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ALGORITHM = "A256GCM"


class MediaIntegrityError(Exception):
    """Downloaded media does not match its hash or does not authenticate under its key."""


class MediaKey(msgspec.Struct, frozen=True, kw_only=True):
    """What a recipient needs to fetch and open one encrypted file."""

    key: bytes
    nonce: bytes
    sha256: bytes  # of the ciphertext, as stored by the gateway
    size: int  # of the ciphertext


def encrypt_media(plaintext: bytes) -> tuple[bytes, MediaKey]:
    """Encrypt a file under a fresh 256-bit key; return the ciphertext and its key material."""
    key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(12)
    ciphertext = AESGCM(key).encrypt(nonce, plaintext, None)
    digest = hashlib.sha256(ciphertext).digest()
    return ciphertext, MediaKey(key=key, nonce=nonce, sha256=digest, size=len(ciphertext))


def decrypt_media(ciphertext: bytes, media_key: MediaKey) -> bytes:
    """Check the ciphertext's hash, then decrypt and authenticate it."""
    if not hmac.compare_digest(hashlib.sha256(ciphertext).digest(), media_key.sha256):
        raise MediaIntegrityError("the media does not match its hash")
    try:
        return AESGCM(media_key.key).decrypt(media_key.nonce, ciphertext, None)
    except InvalidTag:
        raise MediaIntegrityError("the media does not authenticate under its key") from None
