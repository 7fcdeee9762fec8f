"""WhatsApp Cloud API: webhooks (`whatsapp_business_account`) and send requests <-> neutral.

In this model the platform user plays the Cloud API "business": it receives webhooks for what
third parties send it (messages, and statuses for its own messages) and sends `/messages`
requests. Webhooks follow what real parsers expect (DESIGN §5): string timestamps in seconds,
`wamid.` ids (neutral id `x` is `wamid.x`), `contacts[]` with `wa_id` and `user_id` on
messages and statuses alike.

Degradations: `sent_at` is cut to whole seconds (WhatsApp timestamps); a MIMI message that
becomes several WhatsApp messages gets ids `<wamid>.1`, `<wamid>.2`... after the first; WhatsApp
has no typing webhook (typing goes out as the `/messages` typing indicator, which needs the id of
the message being answered, and "off" has no native form: the indicator clears itself).
"""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.translate import common as c
from gateway.translate.errors import TranslationError
from gateway.translate.limits import LIMITS
from gateway.translate.neutral import (
    Envelope,
    MessageRefs,
    NeutralEvent,
    UserDirectory,
    native_user_id,
    receipt_event,
    user_uri,
)
from gateway.translate.whatsapp_content import content_to_native, native_to_content
from gateway.translate.whatsapp_wire import (
    OBJECT,
    neutral_id,
    plain_text,
    plain_text_events,
    text_template,
    text_webhook,
    to_webhook_message,
    wamid,
    webhook_contact,
    webhook_envelope,
)

SERVICE = "whatsapp"
SERVICE_LIMITS = LIMITS[SERVICE]
_STATUSES = frozenset({"sent", "delivered", "read", "failed"})

__all__ = [
    "SERVICE",
    "SERVICE_LIMITS",
    "content_to_native",
    "encode_webhook",
    "native_to_content",
    "native_user_id_of",
    "send_request_from_neutral",
    "send_request_to_neutral",
    "typing_to_native",
    "user_uri_of",
    "webhook_from_neutral",
    "webhook_to_neutral",
]


def native_user_id_of(uri: str, key: bytes = b"") -> str:
    """The WhatsApp id (wa_id, or scoped id for a third party) of a user URI."""
    return native_user_id(SERVICE, uri, key)


def user_uri_of(native_id: str, users: UserDirectory | None = None) -> str:
    """The URI of a WhatsApp-side id."""
    return user_uri(SERVICE, native_id, users)


def webhook_from_neutral(
    event: NeutralEvent, *, refs: MessageRefs | None = None, key: bytes = b""
) -> dict[str, Any]:
    """Render a neutral message or receipt as the webhook the recipient's side receives."""
    env = event.envelope
    sender = native_user_id(SERVICE, env.sender, key)
    recipient = native_user_id(SERVICE, env.recipient, key)
    timestamp = str(env.sent_at // 1000)
    if env.kind == "message":
        if event.content is None:
            raise TranslationError("content", "a message needs content")
        body = plain_text(event.content)
        if body is not None:
            return text_webhook(
                sender, recipient, event.sender_name, wamid(env.id), timestamp, body
            )
        natives = content_to_native(event.content, refs=refs)
        messages = [
            {"from": sender, "id": wamid(env.id, i), "timestamp": timestamp}
            | to_webhook_message(obj, recipient)
            for i, obj in enumerate(natives)
        ]
        value = {"contacts": [webhook_contact(sender, event.sender_name)], "messages": messages}
        return webhook_envelope(recipient, value)
    if env.kind == "receipt":
        receipt = event.receipt
        if receipt is None:
            raise TranslationError("receipt", "a receipt event needs a receipt")
        contact = webhook_contact(sender, event.sender_name)
        status: dict[str, Any] = {
            "id": wamid(receipt.message_id),
            "status": receipt.status,
            "timestamp": timestamp,
            "recipient_id": sender,
            "recipient_user_id": contact["user_id"],
        }
        if receipt.error_code is not None or receipt.error_title is not None:
            title = receipt.error_title or ""
            status["errors"] = [
                {"code": receipt.error_code or 0, "title": title, "message": title}
            ]
        return webhook_envelope(recipient, {"contacts": [contact], "statuses": [status]})
    raise TranslationError("kind", "whatsapp webhooks carry no typing; use typing_to_native")


def encode_webhook(
    event: NeutralEvent, *, refs: MessageRefs | None = None, key: bytes = b""
) -> bytes:
    """`webhook_from_neutral` as JSON bytes, the form that goes on the wire.

    Plain text, most of the traffic, fills a cached per-conversation template instead of
    building and encoding the whole envelope each time.
    """
    env = event.envelope
    if env.kind == "message" and event.content is not None:
        body = plain_text(event.content)
        if body is not None:
            head, after_id, after_ts, tail = text_template(
                env.sender, env.recipient, event.sender_name, key
            )
            encode = msgspec.json.encode
            timestamp = b'"%d"' % (env.sent_at // 1000)
            mid = encode("wamid." + env.id)
            return b"".join((head, mid, after_id, timestamp, after_ts, encode(body), tail))
    return msgspec.json.encode(webhook_from_neutral(event, refs=refs, key=key))


def _names(value: dict[str, Any], path: str) -> dict[str, str]:
    names: dict[str, str] = {}
    contacts = value.get("contacts", [])
    if not isinstance(contacts, list):
        raise TranslationError(f"{path}.contacts", "expected an array")
    for i, contact in enumerate(contacts):
        contact = c.as_obj(contact, f"{path}.contacts[{i}]")
        profile = contact.get("profile")
        name = profile.get("name") if isinstance(profile, dict) else None
        if isinstance(name, str):
            for id_key in ("wa_id", "user_id"):
                if isinstance(contact.get(id_key), str):
                    names[contact[id_key]] = name
    return names


def _items(value: dict[str, Any], key: str, path: str) -> list[Any]:
    return c.get_list(value, key, path) if key in value else []


def _change_events(
    value: dict[str, Any], path: str, users: UserDirectory | None, refs: MessageRefs | None
) -> list[NeutralEvent]:
    metadata = c.get_obj(value, "metadata", path)
    phone = c.get_id(metadata, "display_phone_number", f"{path}.metadata")
    recipient = user_uri(SERVICE, phone, users)
    names = _names(value, path)
    events = []
    for i, msg in enumerate(_items(value, "messages", path)):
        mpath = f"{path}.messages[{i}]"
        msg = c.as_obj(msg, mpath)
        sender = c.get_id(msg, "from", mpath)
        env = Envelope(
            id=neutral_id(c.get_str(msg, "id", mpath)),
            sender=user_uri(SERVICE, sender, users),
            recipient=recipient,
            sent_at=c.timestamp_ms(msg.get("timestamp"), f"{mpath}.timestamp", unit_ms=1000),
        )
        content = native_to_content(msg, refs=refs, path=mpath)
        events.append(NeutralEvent(envelope=env, content=content, sender_name=names.get(sender)))
    for i, status in enumerate(_items(value, "statuses", path)):
        spath = f"{path}.statuses[{i}]"
        status = c.as_obj(status, spath)
        state = c.get_str(status, "status", spath)
        if state not in _STATUSES:
            raise TranslationError(f"{spath}.status", f"unknown status {state!r}")
        reader = c.get_id(status, "recipient_id", spath)
        errors = status.get("errors") or [{}]
        error = c.as_obj(errors[0] if isinstance(errors, list) else None, f"{spath}.errors[0]")
        code, title = error.get("code"), error.get("title")
        event = receipt_event(
            neutral_id(c.get_str(status, "id", spath)),
            state,  # type: ignore[arg-type]
            sender=user_uri(SERVICE, reader, users),
            recipient=recipient,
            sent_at=c.timestamp_ms(status.get("timestamp"), f"{spath}.timestamp", unit_ms=1000),
            error_code=code if type(code) is int else None,
            error_title=title if isinstance(title, str) else None,
        )
        events.append(event)
    return events


def webhook_to_neutral(
    payload: bytes | str | dict[str, Any],
    *,
    users: UserDirectory | None = None,
    refs: MessageRefs | None = None,
) -> list[NeutralEvent]:
    """Parse a `whatsapp_business_account` webhook into neutral messages and receipts."""
    if isinstance(payload, bytes | str):
        fast = plain_text_events(payload.encode() if isinstance(payload, str) else payload, users)
        if fast is not None:
            return fast
    doc = c.load_json(payload)
    if doc.get("object") != OBJECT:
        raise TranslationError("object", f"expected {OBJECT!r}")
    events: list[NeutralEvent] = []
    for cpath, change in c.webhook_items(doc, "changes"):
        if change.get("field") == "messages":  # other fields are account events
            value = c.get_obj(change, "value", cpath)
            events.extend(_change_events(value, f"{cpath}.value", users, refs))
    return events


def send_request_from_neutral(
    event: NeutralEvent, *, refs: MessageRefs | None = None, key: bytes = b""
) -> list[dict[str, Any]]:
    """Render a neutral message or read receipt as Cloud API `/messages` request bodies."""
    env = event.envelope
    if env.kind == "message" and event.content is not None:
        head = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": native_user_id(SERVICE, env.recipient, key),
        }
        return [head | obj for obj in content_to_native(event.content, refs=refs)]
    if env.kind == "receipt" and event.receipt is not None:
        if event.receipt.status != "read":
            raise TranslationError("receipt.status", "whatsapp senders only report reads")
        mid = wamid(event.receipt.message_id)
        return [{"messaging_product": "whatsapp", "status": "read", "message_id": mid}]
    raise TranslationError("kind", "typing needs typing_to_native (it names a message)")


def typing_to_native(event: NeutralEvent, *, message_id: str | None = None) -> dict | None:
    """The Cloud API typing indicator for `typing: on` (None for off, which has no form)."""
    if event.typing != "on":
        return None
    if not message_id:
        raise TranslationError("message_id", "whatsapp shows typing in reply to a message")
    return {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": wamid(message_id),
        "typing_indicator": {"type": "text"},
    }


def send_request_to_neutral(
    body: bytes | str | dict[str, Any],
    *,
    sender: str,
    id: str,
    sent_at: int,
    recipient: str | None = None,
    users: UserDirectory | None = None,
    refs: MessageRefs | None = None,
) -> list[NeutralEvent]:
    """Parse a `/messages` request of the platform user `sender` into neutral events.

    A mark-as-read request names only the message, so its `recipient` (that message's sender)
    comes from the caller; a typing indicator also yields a typing event.
    """
    doc = c.load_json(body)
    if doc.get("messaging_product", "whatsapp") != "whatsapp":
        raise TranslationError("messaging_product", "expected 'whatsapp'")
    if "status" in doc:
        if doc["status"] != "read":
            raise TranslationError("status", "only 'read' can be sent")
        if recipient is None:
            raise TranslationError("message_id", "the sender of the read message is unknown")
        mid = neutral_id(c.get_str(doc, "message_id", ""))
        events = [receipt_event(mid, "read", sender=sender, recipient=recipient, sent_at=sent_at)]
        if doc.get("typing_indicator") is not None:
            env = Envelope(
                id=f"typing:{mid}", sender=sender, recipient=recipient, sent_at=sent_at,
                kind="typing",
            )  # fmt: skip
            events.append(NeutralEvent(envelope=env, typing="on"))
        return events
    to = user_uri(SERVICE, c.get_str(doc, "to", "").lstrip("+"), users)
    content = native_to_content(doc, refs=refs, path="body")
    env = Envelope(id=id, sender=sender, recipient=to, sent_at=sent_at)
    return [NeutralEvent(envelope=env, content=content)]


class _WhatsAppTranslator:
    """The module's functions as an object satisfying the common Translator protocol."""

    service = SERVICE
    limits = SERVICE_LIMITS
    content_to_native = staticmethod(content_to_native)
    native_to_content = staticmethod(native_to_content)
    webhook_from_neutral = staticmethod(webhook_from_neutral)
    webhook_to_neutral = staticmethod(webhook_to_neutral)
    send_request_from_neutral = staticmethod(send_request_from_neutral)
    send_request_to_neutral = staticmethod(send_request_to_neutral)
    native_user_id = staticmethod(native_user_id_of)
    user_uri = staticmethod(user_uri_of)

    @staticmethod
    def typing_to_native(
        event: NeutralEvent, *, key: bytes = b"", message_id: str | None = None
    ) -> dict[str, Any] | None:
        """See the module-level typing_to_native."""
        return typing_to_native(event, message_id=message_id)


TRANSLATOR = _WhatsAppTranslator()
