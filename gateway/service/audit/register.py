"""The data register (Art. 7(8) DMA, Art. 30 GDPR): each personal datum the gateway exchanges or
keeps, why, and for how long. Static and reviewed with the code that handles the data."""

from __future__ import annotations

from typing import TypedDict


class RegisterEntry(TypedDict):
    datum: str
    source: str
    purpose: str
    retention: str
    kept_as: str


DATA_REGISTER: tuple[RegisterEntry, ...] = (
    {
        "datum": "user identifier (MIMI URI)",
        "source": "providers, platforms",
        "purpose": "address messages, keys and receipts to the right user (Art. 7(2))",
        "retention": "while the user's consent to the provider lasts",
        "kept_as": "plain in routing tables; keyed HMAC pseudonym in the audit log",
    },
    {
        "datum": "interoperability consent",
        "source": "platform users",
        "purpose": "let only users who chose interoperability be reached (Art. 7(7))",
        "retention": "until withdrawn, then 30 days as evidence",
        "kept_as": "per user and provider",
    },
    {
        "datum": "encrypted message (ciphertext)",
        "source": "senders",
        "purpose": "relay end-to-end encrypted messages it cannot read (Art. 7(3))",
        "retention": "until delivered and acknowledged, at most 30 days",
        "kept_as": "opaque bytes, AES-GCM under a per-minute key destroyed once delivered",
    },
    {
        "datum": "plaintext content (optional-E2EE services only)",
        "source": "senders",
        "purpose": "translate content where the service allows plaintext",
        "retention": "until delivered and acknowledged, at most 30 days",
        "kept_as": "native objects, AES-GCM under a per-minute key destroyed once delivered",
    },
    {
        "datum": "message envelope (sender, recipient, time, size, type)",
        "source": "senders",
        "purpose": "routing, delivery receipts, idempotency",
        "retention": "30 days after delivery",
        "kept_as": "plain in the outbox; digest and size only in the audit log",
    },
    {
        "datum": "encrypted media",
        "source": "senders",
        "purpose": "hand attachments to recipients; the key travels inside the message",
        "retention": "until fetched by every recipient, at most 30 days",
        "kept_as": "opaque bytes with their SHA-256",
    },
    {
        "datum": "public identity and one-time keys",
        "source": "providers, platforms",
        "purpose": "establish end-to-end encrypted sessions (Art. 7(3))",
        "retention": "identity keys while the user is reachable; one-time keys until claimed",
        "kept_as": "public keys only, never private keys",
    },
    {
        "datum": "provider organisation and contact e-mail",
        "source": "interop requests",
        "purpose": "process requests within 3 months (Art. 7(5)), contact the provider",
        "retention": "while the provider is onboarded, then 5 years (compliance evidence)",
        "kept_as": "plain in interop_requests",
    },
    {
        "datum": "audit record",
        "source": "every request and significant event",
        "purpose": "compliance evidence and auditors' access (Art. 11, 26)",
        "retention": "5 years",
        "kept_as": "route template, status, timing, pseudonyms, payload digest and size",
    },
)
