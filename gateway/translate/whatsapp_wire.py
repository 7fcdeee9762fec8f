"""WhatsApp webhook shapes, and the plain-text hot path (cached template, typed decoding).

Plain text is most of the traffic; it skips content classification and dict walking, and
anything unusual falls back to the general path in whatsapp.py (tests keep both identical).
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

import msgspec

from gateway.content import Disposition, MimiContent, SinglePart
from gateway.content.model import NO_EXTENSIONS
from gateway.translate import common as c
from gateway.translate.limits import LIMITS
from gateway.translate.neutral import (
    Envelope,
    NeutralEvent,
    UserDirectory,
    native_user_id,
    user_uri,
)
from gateway.translate.whatsapp_content import MEDIA_KINDS

SERVICE = "whatsapp"
OBJECT = "whatsapp_business_account"
BSUID_COUNTRY = "ZZ"  # user-assigned ISO 3166 code: BSUIDs we mint are never real ones
TEXT_MAX = LIMITS[SERVICE].text_max


def wamid(neutral_id: str, index: int = 0) -> str:
    """The WhatsApp message id of a neutral message id: `wamid.` + id (+ `.index`)."""
    return f"wamid.{neutral_id}" if index == 0 else f"wamid.{neutral_id}.{index}"


def neutral_id(native_id: str) -> str:
    """The neutral id of a WhatsApp message id, the inverse of `wamid`."""
    return native_id.removeprefix("wamid.")


def webhook_contact(native_id: str, name: str | None) -> dict[str, Any]:
    profile = {"name": name or native_id}
    if native_id.isdigit():
        return {"profile": profile, "wa_id": native_id, "user_id": f"{BSUID_COUNTRY}.{native_id}"}
    return {"profile": profile, "user_id": native_id}  # a BSUID-only user has no phone number


def _media_id(url: str) -> str:
    tail = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    return tail or str(int.from_bytes(hashlib.sha256(url.encode()).digest()[:8], "big"))


def to_webhook_message(obj: dict[str, Any], recipient: str) -> dict[str, Any]:
    """Send-API message object -> webhook message fields (context.id, media url/id)."""
    out = dict(obj)
    context = out.get("context")
    if context is not None:
        out["context"] = {"from": recipient, "id": context["message_id"]}
    kind = out["type"]
    if kind in MEDIA_KINDS:
        media = dict(out[kind])
        link = media.pop("link", None)
        if link is not None:
            media["url"] = link
            media.setdefault("id", _media_id(link))
        media.setdefault("sha256", "")
        out[kind] = media
    elif kind == "edit":
        edit = out["edit"]
        out["edit"] = {**edit, "message": to_webhook_message(edit["message"], recipient)}
    return out


def webhook_envelope(recipient: str, value: dict[str, Any]) -> dict[str, Any]:
    metadata = {"display_phone_number": recipient, "phone_number_id": recipient}
    value = {"messaging_product": "whatsapp", "metadata": metadata, **value}
    change = {"value": value, "field": "messages"}
    return {"object": OBJECT, "entry": [{"id": recipient, "changes": [change]}]}


def text_webhook(
    sender: str, recipient: str, name: str | None, mid: str, timestamp: str, body: str
) -> dict[str, Any]:
    """The webhook of one plain text message (what the general path builds, built directly)."""
    message = {
        "from": sender,
        "id": mid,
        "timestamp": timestamp,
        "type": "text",
        "text": {"body": body},
    }
    return webhook_envelope(
        recipient, {"contacts": [webhook_contact(sender, name)], "messages": [message]}
    )


_MARKS = ("\x00id", "\x00ts", "\x00body")


@functools.lru_cache(maxsize=4096)
def text_template(
    sender_uri: str, recipient_uri: str, name: str | None, key: bytes
) -> tuple[bytes, ...]:
    """The JSON of a text webhook between one sender and recipient, cut where values go."""
    sender = native_user_id(SERVICE, sender_uri, key)
    recipient = native_user_id(SERVICE, recipient_uri, key)
    rest = msgspec.json.encode(text_webhook(sender, recipient, name, *_MARKS))
    pieces = []
    # Cut from the end: the values sit last, and a display name could spell a mark.
    for mark in reversed(_MARKS):
        rest, after = rest.rsplit(msgspec.json.encode(mark), 1)
        pieces.append(after)
    return (rest, *reversed(pieces))


def plain_text(content: MimiContent) -> str | None:
    """The body of a plain text message, or None to take the general path.

    Plain text is most of the traffic (DESIGN §5 bench figure); checking for it costs less
    than classifying the content, and anything unusual (or invalid) goes the general way.
    """
    part = content.nested_part
    if (
        type(part) is not SinglePart
        or part.content_type != c.TEXT_PLAIN
        or part.disposition != Disposition.RENDER
        or part.language
        or content.replaces is not None
        or content.in_reply_to is not None
        or content.topic_id
        or content.expires is not None
        or (content.extensions is not NO_EXTENSIONS and content.extensions != NO_EXTENSIONS)
    ):
        return None
    try:
        body = part.content.decode()
    except UnicodeDecodeError:
        return None
    if not 0 < len(body) <= TEXT_MAX:
        return None
    return body


class _Text(msgspec.Struct, gc=False):
    body: str


class _Message(msgspec.Struct, gc=False, rename={"sender": "from"}):
    sender: str
    id: str
    timestamp: str
    type: str
    text: _Text | None = None
    context: Any = None
    mimi: Any = None


class _Profile(msgspec.Struct, gc=False):
    name: str | None = None


class _Contact(msgspec.Struct, gc=False):
    wa_id: str | None = None
    user_id: str | None = None
    profile: _Profile | None = None


class _Metadata(msgspec.Struct, gc=False):
    display_phone_number: str


class _Value(msgspec.Struct, gc=False):
    metadata: _Metadata
    contacts: list[_Contact] = []
    messages: list[_Message] = []
    statuses: Any = None


class _Change(msgspec.Struct, gc=False):
    value: _Value
    field: str


class _Entry(msgspec.Struct, gc=False):
    changes: list[_Change]


class _Webhook(msgspec.Struct, gc=False):
    object: str
    entry: list[_Entry]


_FAST_DECODER = msgspec.json.Decoder(_Webhook)


def plain_text_events(payload: bytes, users: UserDirectory | None) -> list[NeutralEvent] | None:
    """Parse a webhook of plain text messages only, or return None for the general path."""
    try:
        doc = _FAST_DECODER.decode(payload)
    except msgspec.DecodeError:
        return None
    if doc.object != OBJECT:
        return None
    events = []
    for entry in doc.entry:
        for change in entry.changes:
            value = change.value
            if change.field != "messages" or value.statuses is not None:
                return None
            recipient = user_uri(SERVICE, value.metadata.display_phone_number, users)
            names = {}
            for contact in value.contacts:
                if contact.profile is not None and contact.profile.name is not None:
                    for native in (contact.wa_id, contact.user_id):
                        if native is not None:
                            names[native] = contact.profile.name
            for msg in value.messages:
                if (
                    msg.type != "text"
                    or msg.text is None
                    or msg.context is not None
                    or msg.mimi is not None
                    or not msg.timestamp.isdigit()
                    or not msg.sender
                ):
                    return None
                env = Envelope(
                    id=neutral_id(msg.id),
                    sender=user_uri(SERVICE, msg.sender, users),
                    recipient=recipient,
                    sent_at=int(msg.timestamp) * 1000,
                )
                content = MimiContent(nested_part=c.text_part(msg.text.body))
                event = NeutralEvent(
                    envelope=env, content=content, sender_name=names.get(msg.sender)
                )
                events.append(event)
    return events
