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
from gateway.translate.groups import (
    GroupEvent,
    Membership,
    meta_group_webhook,
    whatsapp_group_webhooks,
)
from gateway.translate.meta import MetaTranslator
from gateway.translate.neutral import ReceiptStatus

__all__ = [
    "TranslationError",
    "content_to_send",
    "group_membership_webhooks",
    "group_send_object_webhooks",
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


def _group_webhooks(service: str, item: GroupEvent, refs: MemoryMessageRefs, key: bytes) -> Any:
    if service == "whatsapp":
        return whatsapp_group_webhooks(item, refs=refs, key=key)
    translator = TRANSLATORS[service]
    assert isinstance(translator, MetaTranslator)
    return [meta_group_webhook(translator, item, refs=refs, key=key)]


def group_send_object_webhooks(
    service: str,
    obj: Any,
    *,
    group: str,
    sender: str,
    recipient: str,
    message_id: str,
    sent_at: int,
    key: bytes = b"",
) -> list[dict[str, Any]]:
    """The native group envelopes member `recipient` receives for one send object in `group`:
    WhatsApp a message webhook with `group_id`, Messenger/Instagram the 1:1 one with `thread`."""
    refs = MemoryMessageRefs()
    event = NeutralEvent(
        envelope=Envelope(id=message_id, sender=sender, recipient=recipient, sent_at=sent_at),
        content=TRANSLATORS[service].native_to_content(obj, refs=refs),
    )
    item = GroupEvent(group=group, member=recipient, event=event)
    return list(_group_webhooks(service, item, refs, key))


def group_membership_webhooks(
    service: str,
    *,
    group: str,
    member: str,
    by: str | None,
    added: list[str],
    removed: list[str],
    sent_at: int,
    key: bytes = b"",
) -> list[dict[str, Any]]:
    """The native membership change(s) member `member` receives (none when nothing changed)."""
    if not added and not removed:
        return []
    membership = Membership(
        sent_at=sent_at, added=tuple(added), removed=tuple(removed), by=by,
        initiated_by="participant" if by is not None and by in removed else None,
    )  # fmt: skip
    item = GroupEvent(group=group, member=member, membership=membership)
    return list(_group_webhooks(service, item, MemoryMessageRefs(), key))
