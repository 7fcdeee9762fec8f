"""Keyed pseudonyms of user URIs: HMAC-SHA256 under a secret key kept in the data dir.

The same URI gives the same pseudonym under one key, so an auditor can count and correlate
without learning who; only the key holder can test "is this pseudonym mimi://whatsapp/u/49...?".
Each record names the key (`pseudonym_key`, a hash of the key) so keys can be rotated: move
`audit-pseudonym.key` aside and restart, and a new key is made (README, "Auditing").
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

from gateway import secretfiles

KEY_FILE = "audit-pseudonym.key"


class Pseudonymizer:
    """Maps a user URI to a 128-bit hex pseudonym under one key."""

    __slots__ = ("_key", "key_id")

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the pseudonym key must be at least 32 bytes")
        self._key = key
        # Identifies the key without revealing it (the key is 256 random bits).
        self.key_id = hashlib.sha256(b"dma-gateway pseudonym key id\x00" + key).hexdigest()[:16]

    def __call__(self, uri: str) -> str:
        """The pseudonym of `uri`."""
        return hmac.new(self._key, uri.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def load_pseudonymizer(data_dir: Path) -> Pseudonymizer:
    """The pseudonymizer on <data_dir>/audit-pseudonym.key, created (0600) on first use."""
    key, _ = secretfiles.load_or_create(data_dir / KEY_FILE, lambda: secrets.token_bytes(32))
    return Pseudonymizer(key)
