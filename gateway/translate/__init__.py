"""Native <-> neutral translation for WhatsApp, Messenger and Instagram (pure functions).

Call them by service name through `TRANSLATORS[service]`, which all follow `Translator`.
"""

from __future__ import annotations

from typing import Any, Protocol

from gateway.content import MimiContent
from gateway.translate import instagram, messenger, whatsapp
from gateway.translate.errors import TranslationError
from gateway.translate.limits import ServiceLimits
from gateway.translate.neutral import (
    Envelope,
    MemoryMessageRefs,
    MemoryUserDirectory,
    MessageRefs,
    NeutralEvent,
    Receipt,
    UserDirectory,
    derived_message_id,
    native_user_id,
    platform_uri,
    receipt_event,
    scoped_user_id,
    split_uri,
    user_uri,
)


class Translator(Protocol):
    """What the relay, the sandbox and the SDK call, whatever the service."""

    service: str
    limits: ServiceLimits

    def content_to_native(
        self, content: MimiContent, *, refs: MessageRefs | None = None
    ) -> list[dict[str, Any]]:
        """MIMI content -> native message objects (the plaintext the SDK encrypts)."""
        ...

    def native_to_content(self, obj: Any, *, refs: MessageRefs | None = None) -> MimiContent:
        """One native message object -> MIMI content."""
        ...

    def webhook_from_neutral(
        self, event: NeutralEvent, *, refs: MessageRefs | None = None, key: bytes = b""
    ) -> dict[str, Any]:
        """A neutral message or receipt -> the native webhook envelope."""
        ...

    def webhook_to_neutral(
        self,
        payload: bytes | str | dict[str, Any],
        *,
        users: UserDirectory | None = None,
        refs: MessageRefs | None = None,
    ) -> list[NeutralEvent]:
        """A native webhook envelope -> neutral events."""
        ...

    def send_request_from_neutral(
        self, event: NeutralEvent, *, refs: MessageRefs | None = None, key: bytes = b""
    ) -> list[dict[str, Any]]:
        """A neutral event -> native send-API request bodies."""
        ...

    def send_request_to_neutral(
        self,
        body: bytes | str | dict[str, Any],
        *,
        sender: str,
        id: str,
        sent_at: int,
        recipient: str | None = None,
        users: UserDirectory | None = None,
        refs: MessageRefs | None = None,
    ) -> list[NeutralEvent]:
        """A platform user's send-API request -> neutral events."""
        ...

    def typing_to_native(
        self, event: NeutralEvent, *, key: bytes = b"", message_id: str | None = None
    ) -> dict[str, Any] | None:
        """A typing event -> the native send-API request (None if it has no native form)."""
        ...

    def native_user_id(self, uri: str, key: bytes = b"") -> str:
        """The native id of a user URI (scoped id for a third party)."""
        ...

    def user_uri(self, native_id: str, users: UserDirectory | None = None) -> str:
        """The URI of a native id."""
        ...


TRANSLATORS: dict[str, Translator] = {
    "whatsapp": whatsapp.TRANSLATOR,
    "messenger": messenger.TRANSLATOR,
    "instagram": instagram.TRANSLATOR,
}

__all__ = [
    "TRANSLATORS",
    "Envelope",
    "MemoryMessageRefs",
    "MemoryUserDirectory",
    "MessageRefs",
    "NeutralEvent",
    "Receipt",
    "TranslationError",
    "Translator",
    "UserDirectory",
    "derived_message_id",
    "native_user_id",
    "platform_uri",
    "receipt_event",
    "scoped_user_id",
    "split_uri",
    "user_uri",
]
