"""End-to-end encryption primitives shared by the sandbox platforms and the client SDK.

Built on vodozemac (audited Olm) and `cryptography` (AES-256-GCM); nothing here is hand-rolled.
The gateway itself only uses `verify_key_signature`: it relays ciphertext it cannot read.
"""

from gateway.crypto.media import MediaIntegrityError, MediaKey, decrypt_media, encrypt_media
from gateway.crypto.olm import (
    DecryptionFailed,
    IdentifiedKey,
    KeyBundle,
    OlmCiphertext,
    OlmParty,
    SignedKey,
    verify_key_signature,
)

__all__ = [
    "DecryptionFailed",
    "IdentifiedKey",
    "KeyBundle",
    "MediaIntegrityError",
    "MediaKey",
    "OlmCiphertext",
    "OlmParty",
    "SignedKey",
    "decrypt_media",
    "encrypt_media",
    "verify_key_signature",
]
