"""The neutral side of translation: an envelope plus MIMI content, receipts and typing.

Ids of people are MIMI-style URIs (DESIGN §4): `mimi://whatsapp/u/<wa_id>`,
`mimi://messenger/u/<PSID>`, `mimi://instagram/u/<IGSID>`, third parties
`mimi://<client_id>/u/<id>`. A third-party user appears natively under a stable, provider-scoped
id (`scoped_user_id`) that maps back to its URI through a `UserDirectory`.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from typing import Any, Literal, Protocol

import msgspec

from gateway.content import MimiContent
from gateway.translate.errors import TranslationError
from gateway.uris import split_user_uri

Kind = Literal["message", "receipt", "typing"]
ReceiptStatus = Literal["sent", "delivered", "read", "failed"]


class Envelope(
    msgspec.Struct, frozen=True, kw_only=True, rename={"sender": "from", "recipient": "to"}
):
    """Who sent what kind of event to whom, and when (`sent_at` in ms since the epoch)."""

    id: str
    sender: str
    recipient: str
    sent_at: int
    kind: Kind = "message"


class Receipt(msgspec.Struct, frozen=True, kw_only=True):
    """A delivery status of one message, identified by its native/neutral message id."""

    message_id: str  # "" for a watermark receipt (Messenger reads)
    status: ReceiptStatus
    watermark: int | None = None  # everything sent up to this ms time is read
    error_code: int | None = None
    error_title: str | None = None


class NeutralEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One event: a message (content), a receipt or a typing state, per `envelope.kind`."""

    envelope: Envelope
    content: MimiContent | None = None
    receipt: Receipt | None = None
    typing: Literal["on", "off"] | None = None
    sender_name: str | None = None


def receipt_event(
    message_id: str,
    status: ReceiptStatus,
    *,
    sender: str,
    recipient: str,
    sent_at: int,
    **error: Any,
) -> NeutralEvent:
    """Build a receipt event; its envelope id is derived from the message id and status."""
    return NeutralEvent(
        envelope=Envelope(
            id=f"{status}:{message_id}", sender=sender, recipient=recipient, sent_at=sent_at,
            kind="receipt",
        ),
        receipt=Receipt(message_id=message_id, status=status, **error),
    )  # fmt: skip


# -- users --------------------------------------------------------------------------------------

SCOPED_PREFIX = {"whatsapp": "999", "messenger": "9", "instagram": "9"}
SCOPED_DIGITS = {"whatsapp": 12, "messenger": 16, "instagram": 16}


def platform_uri(service: str, native_id: str) -> str:
    """The URI of a platform user (DESIGN §4)."""
    return f"mimi://{service}/u/{native_id}"


def split_uri(uri: str, field: str = "uri") -> tuple[str, str]:
    """Split `mimi://<authority>/u/<id>` into (authority, id)."""
    parsed = split_user_uri(uri)
    if parsed is None:
        raise TranslationError(field, "expected mimi://<authority>/u/<id>")
    return parsed.authority, parsed.local


@functools.lru_cache(maxsize=65536)  # on every message's path; the HMAC is the costly part
def scoped_user_id(service: str, uri: str, key: bytes = b"") -> str:
    """The stable provider-scoped native id of a third-party user: digits, like native ids.

    Keyed (HMAC-SHA256) so that ids cannot be linked to URIs by anyone without the key; the
    prefixes (ITU code 999 is unassigned) make a collision with a real phone number unlikely.
    """
    digest = hmac.new(key, f"{service}\0{uri}".encode(), hashlib.sha256).digest()
    digits = SCOPED_DIGITS[service]
    number = int.from_bytes(digest[:16], "big") % 10**digits
    return f"{SCOPED_PREFIX[service]}{number:0{digits}d}"


@functools.lru_cache(maxsize=65536)
def native_user_id(service: str, uri: str, key: bytes = b"") -> str:
    """The native id under which `uri` appears on `service`."""
    authority, user = split_uri(uri)
    return user if authority == service else scoped_user_id(service, uri, key)


class UserDirectory(Protocol):
    """Resolves a provider-scoped native id back to the third-party URI it stands for."""

    def uri_for(self, service: str, native_id: str) -> str | None: ...


class MemoryUserDirectory:
    """A dict-backed UserDirectory (SDK, sandbox and tests); the relay backs it with its store."""

    def __init__(self, key: bytes = b"") -> None:
        self.key = key
        self._uris: dict[tuple[str, str], str] = {}

    def remember(self, service: str, uri: str) -> str:
        """Record a third-party URI and return its native id on `service`."""
        native = native_user_id(service, uri, self.key)
        if split_uri(uri)[0] != service:
            self._uris[(service, native)] = uri
        return native

    def uri_for(self, service: str, native_id: str) -> str | None:
        """Return the third-party URI of a scoped id, if known."""
        return self._uris.get((service, native_id))


def user_uri(service: str, native_id: str, users: UserDirectory | None) -> str:
    """Map a native id to its URI: a known third party, otherwise a platform user."""
    if users is not None:
        uri = users.uri_for(service, native_id)
        if uri is not None:
            return uri
    return platform_uri(service, native_id)


# -- message references -------------------------------------------------------------------------


def derived_message_id(service: str, native_id: str) -> bytes:
    """A MIMI MessageId standing for a native message that carries no MIMI content.

    It has the draft's shape (hash algorithm 0x01 then 31 bytes of SHA-256), over a label that
    cannot collide with a real message ID's input (which starts with a 2-byte length).
    """
    digest = hashlib.sha256(f"dma-gateway native message\0{service}\0{native_id}".encode())
    return b"\x01" + digest.digest()[:31]


class MessageRefs(Protocol):
    """Maps native message ids to MIMI MessageIds (inReplyTo, replaces) and back."""

    def mimi_id(self, service: str, native_id: str) -> bytes: ...

    def native_id(self, service: str, mimi_id: bytes) -> str | None: ...


class MemoryMessageRefs:
    """A dict-backed MessageRefs that remembers every pair it has seen or been told."""

    def __init__(self) -> None:
        self._to_native: dict[tuple[str, bytes], str] = {}
        self._to_mimi: dict[tuple[str, str], bytes] = {}

    def remember(self, service: str, native_id: str, mimi_id: bytes) -> None:
        """Record that `native_id` on `service` is the message `mimi_id`."""
        self._to_native[(service, mimi_id)] = native_id
        self._to_mimi[(service, native_id)] = mimi_id

    def mimi_id(self, service: str, native_id: str) -> bytes:
        """Return the known MIMI id, or derive (and remember) one."""
        known = self._to_mimi.get((service, native_id))
        if known is None:
            known = derived_message_id(service, native_id)
            self.remember(service, native_id, known)
        return known

    def native_id(self, service: str, mimi_id: bytes) -> str | None:
        """Return the native id of a MIMI message, if known."""
        return self._to_native.get((service, mimi_id))


class DerivedMessageRefs:
    """Stateless refs: native ids get derived MIMI ids; MIMI ids cannot be resolved back."""

    def mimi_id(self, service: str, native_id: str) -> bytes:
        """Derive the MIMI id."""
        return derived_message_id(service, native_id)

    def native_id(self, service: str, mimi_id: bytes) -> str | None:
        """Unknown without a store."""
        return None


DERIVED_REFS = DerivedMessageRefs()
