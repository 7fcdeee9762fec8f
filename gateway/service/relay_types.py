"""Wire types of the relay's provider API (DESIGN §4.5): messages, receipts, typing, lookup."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from gateway.platforms.base import OlmMessage
from gateway.uris import USER_URI_PATTERN

ClientMessageId = Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+\Z")]
UserUri = Annotated[str, Meta(min_length=10, max_length=512, pattern=USER_URI_PATTERN)]
Ms = Annotated[int, Meta(ge=0, le=2**53)]


class _In(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    rename={"sender": "from", "recipient": "to"},
):
    pass


Encrypted = OlmMessage


class MessageIn(_In, frozen=True):
    """`POST /v1/messages`: exactly one of `encrypted`, `content`, `content_cbor`."""

    id: ClientMessageId
    sender: UserUri
    recipient: UserUri
    sent_at: Ms
    encrypted: Encrypted | None = None
    content: dict[str, Any] | None = None
    content_cbor: str | None = None


class ReceiptIn(_In, frozen=True):
    """`POST /v1/receipts`: `message_id` is the gateway id of the message event received."""

    message_id: Annotated[str, Meta(min_length=1, max_length=128)]
    sender: UserUri
    recipient: UserUri
    status: Literal["delivered", "read"]


class TypingIn(_In, frozen=True):
    sender: UserUri
    recipient: UserUri
    state: Literal["on", "off"]


class Accepted(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    status: Literal["accepted"] = "accepted"


class LookupIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    service: Literal["whatsapp", "messenger", "instagram"]
    identifiers: Annotated[
        list[Annotated[str, Meta(min_length=1, max_length=128)]], Meta(max_length=1000)
    ]


class LookupHit(msgspec.Struct, frozen=True, kw_only=True):
    identifier: str
    uri: str


class LookupOut(msgspec.Struct, frozen=True, kw_only=True):
    users: list[LookupHit]


class AckIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    cursor: Annotated[str, Meta(max_length=32)]
