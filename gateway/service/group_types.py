"""Wire types of the group routes (DESIGN §4.10): rooms, membership, room keys, messages."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from gateway.platforms.base import OlmMessage
from gateway.service.event_types import GroupMember
from gateway.service.relay_types import ClientMessageId, Ms, UserUri

GroupName = Annotated[str, Meta(min_length=1, max_length=256)]
# Megolm session ids and sender keys are unpadded base64 of 32-byte keys (43 characters).
KeyText = Annotated[str, Meta(min_length=1, max_length=128)]
# A group's largest limit is configured per service; this bounds the parser.
UserList = Annotated[list[UserUri], Meta(max_length=4096)]
GroupService = Literal["whatsapp", "messenger", "instagram"]


class _In(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class GroupCreateIn(_In, frozen=True):
    """`POST /v1/groups`; `id` is the client's idempotency key."""

    id: ClientMessageId
    service: GroupService
    creator: UserUri
    name: GroupName
    members: UserList = []


class MembersAddIn(_In, frozen=True):
    by: UserUri
    add: Annotated[list[UserUri], Meta(min_length=1, max_length=4096)]


class MembersRemoveIn(_In, frozen=True):
    by: UserUri
    remove: Annotated[list[UserUri], Meta(min_length=1, max_length=4096)]


class RoomKeyShare(_In, frozen=True, rename={"recipient": "to"}):
    recipient: UserUri
    encrypted: OlmMessage


class RoomKeysIn(_In, frozen=True, rename={"sender": "from"}):
    """`POST /v1/groups/{group_id}/keys`: one Olm-encrypted share per other current member."""

    sender: UserUri
    session_id: KeyText
    shares: Annotated[list[RoomKeyShare], Meta(min_length=1, max_length=4096)]


class MegolmMessage(_In, frozen=True):
    """A Megolm message: `body` is standard base64 of `MegolmMessage.to_bytes()`."""

    protocol: Literal["megolm.v1"]
    session_id: KeyText
    body: Annotated[str, Meta(min_length=1)]
    sender_key: KeyText


class GroupMessageIn(_In, frozen=True, rename={"sender": "from"}):
    """`POST /v1/groups/{group_id}/messages`: exactly one of `encrypted`, `content`."""

    id: ClientMessageId
    sender: UserUri
    sent_at: Ms
    encrypted: MegolmMessage | None = None
    content: dict[str, Any] | None = None


class GroupOut(msgspec.Struct, frozen=True, kw_only=True):
    """A group as it stands (every group route answers with it)."""

    group: str
    service: str
    name: str
    members: list[GroupMember]
    epoch: int
