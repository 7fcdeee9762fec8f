"""The native formats as the platforms see them, through the translators (gateway.translate).

The relay turns plaintext MIMI content into a service's send objects; the sandbox turns the
send object a user received (decrypted) into the webhook envelope that user's client gets,
and a receipt into the status webhook; the http platform reads native webhooks.
"""

from __future__ import annotations

from typing import Any

from gateway.content import MimiContent
from gateway.translate import (
    TRANSLATORS,
    Envelope,
    MemoryMessageRefs,
    NeutralEvent,
    TranslationError,
    receipt_event,
)
from gateway.translate.neutral import ReceiptStatus

__all__ = [
    "TranslationError",
    "content_to_send",
    "receipt_webhook",
    "send_object_to_content",
    "send_object_webhook",
]


def content_to_send(service: str, content: MimiContent) -> list[dict[str, Any]]:
    """The service's send objects (without addressing) for MIMI content, within its limits."""
    return TRANSLATORS[service].content_to_native(content)


def send_object_to_content(service: str, obj: Any) -> MimiContent:
    """Read one native send object back as MIMI content."""
    return TRANSLATORS[service].native_to_content(obj)


def send_object_webhook(
    service: str,
    obj: Any,
    *,
    sender: str,
    recipient: str,
    message_id: str,
    sent_at: int,
    sender_name: str | None = None,
    key: bytes = b"",
) -> dict[str, Any]:
    """The webhook envelope a platform user's client receives for one send object.

    The object's references (reply context, reaction target) are native ids of this
    conversation; one refs table for both steps carries them through unchanged.
    """
    refs = MemoryMessageRefs()
    translator = TRANSLATORS[service]
    event = NeutralEvent(
        envelope=Envelope(id=message_id, sender=sender, recipient=recipient, sent_at=sent_at),
        content=translator.native_to_content(obj, refs=refs),
        sender_name=sender_name,
    )
    return translator.webhook_from_neutral(event, refs=refs, key=key)


def receipt_webhook(
    service: str,
    *,
    message_id: str,
    status: ReceiptStatus,
    sender: str,
    recipient: str,
    sent_at: int,
    key: bytes = b"",
) -> dict[str, Any]:
    """The status webhook of a message the platform user sent (`sender` read/received it)."""
    event = receipt_event(
        message_id,
        status,
        sender=sender,
        recipient=recipient,
        sent_at=sent_at,  # type: ignore[arg-type]
    )
    return TRANSLATORS[service].webhook_from_neutral(event, key=key)
