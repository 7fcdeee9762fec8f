"""The native formats as the platforms see them: send objects in, webhook envelopes out.

One seam between the relay/sandbox and the translators (gateway/translate): the relay turns
plaintext MIMI content into a service's send object; the sandbox wraps a send object its user
received into the webhook envelope that user's client would get (DESIGN §4.8).
"""

from __future__ import annotations

from typing import Any

from gateway.content import MimiContent, SinglePart
from gateway.translate.limits import LIMITS

_TEXT_TYPES = ("text/plain", "text/markdown")


class NativeError(ValueError):
    """Content cannot be expressed natively; `field` names the MIMI field at fault."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def content_to_send(service: str, content: MimiContent) -> dict[str, Any]:
    """The service's send object (without addressing) for MIMI content, within its limits."""
    part = content.nested_part
    if not isinstance(part, SinglePart) or part.content_type.split(";")[0] not in _TEXT_TYPES:
        raise NativeError("nestedPart", f"{service} cannot express this part here")
    try:
        text = part.content.decode()
    except UnicodeDecodeError:
        raise NativeError("nestedPart.content", "not valid UTF-8") from None
    limits = LIMITS[service]
    size = len(text.encode()) if limits.text_unit == "utf8_bytes" else len(text)
    if size > limits.text_max:
        raise NativeError(
            "nestedPart.content", f"{service} accepts at most {limits.text_max} {limits.text_unit}"
        )
    if service == "whatsapp":
        return {"type": "text", "text": {"body": text}}
    return {"text": text}


def webhook_envelope(
    service: str,
    message: dict[str, Any],
    *,
    sender_id: str,
    recipient_id: str,
    message_id: str,
    timestamp_ms: int,
    sender_name: str | None = None,
) -> dict[str, Any]:
    """The webhook envelope a platform user's client receives for a send object."""
    if service == "whatsapp":
        contact: dict[str, Any] = {"wa_id": sender_id, "user_id": sender_id}
        if sender_name:
            contact["profile"] = {"name": sender_name}
        inner = {"from": sender_id, "id": message_id, "timestamp": str(timestamp_ms // 1000)}
        value = {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": recipient_id, "phone_number_id": recipient_id},
            "contacts": [contact],
            "messages": [inner | message],
        }
        return _whatsapp(recipient_id, value)
    return _messaging(
        service,
        recipient_id,
        timestamp_ms,
        {
            "sender": {"id": sender_id},
            "recipient": {"id": recipient_id},
            "timestamp": timestamp_ms,
            "message": {"mid": message_id} | message,
        },
    )


def status_envelope(
    service: str,
    *,
    message_id: str,
    status: str,
    sender_id: str,
    recipient_id: str,
    timestamp_ms: int,
) -> dict[str, Any]:
    """The webhook envelope of a delivery/read status of a message the user sent."""
    if service == "whatsapp":
        value = {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": recipient_id, "phone_number_id": recipient_id},
            "statuses": [
                {
                    "id": message_id,
                    "status": status,
                    "timestamp": str(timestamp_ms // 1000),
                    "recipient_id": sender_id,
                }
            ],
        }
        return _whatsapp(recipient_id, value)
    field = "read" if status == "read" else "delivery"
    body = {"watermark": timestamp_ms, "mids": [message_id]}
    return _messaging(
        service,
        recipient_id,
        timestamp_ms,
        {
            "sender": {"id": sender_id},
            "recipient": {"id": recipient_id},
            "timestamp": timestamp_ms,
            field: body,
        },
    )


def _whatsapp(account_id: str, value: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": account_id, "changes": [{"field": "messages", "value": value}]}],
    }


def _messaging(
    service: str, page_id: str, timestamp_ms: int, messaging: dict[str, Any]
) -> dict[str, Any]:
    obj = "page" if service == "messenger" else "instagram"
    return {
        "object": obj,
        "entry": [{"id": page_id, "time": timestamp_ms, "messaging": [messaging]}],
    }
