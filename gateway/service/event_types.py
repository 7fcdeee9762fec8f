"""Event objects sent to providers (DESIGN §4.6): a msgspec tagged union on `type`.

`event_id` is the event's position in its provider's queue; it is set when the event is read
(`EventQueue` stores events without it), so an event's body never changes once written.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec


class _Event(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    omit_defaults=True,
    tag_field="type",
    rename={"sender": "from", "recipient": "to"},
):
    event_id: str = ""


class MessageEvent(_Event, frozen=True, tag="message"):
    """A message for a provider's user, the same shape as `POST /v1/messages`."""

    id: str
    sender: str
    recipient: str
    sent_at: int
    encrypted: dict[str, Any] | None = None
    content: dict[str, Any] | None = None


class ReceiptEvent(_Event, frozen=True, tag="receipt"):
    """A platform user received or read a message (`message_id` as the provider sent it)."""

    message_id: str
    sender: str
    recipient: str
    status: Literal["delivered", "read"]
    at: int


class TypingEvent(_Event, frozen=True, tag="typing"):
    sender: str
    recipient: str
    state: Literal["on", "off"]
    at: int


class DeliveryFailedEvent(_Event, frozen=True, tag="delivery_failed"):
    """The gateway gave up on an accepted message; `message_id` is the provider's id."""

    message_id: str
    gateway_id: str
    sender: str
    recipient: str
    reason: str
    at: int


class ConsentEvent(_Event, frozen=True, tag="consent"):
    """A platform user granted or revoked consent to this provider (Art. 7(7))."""

    user: str
    state: Literal["granted", "revoked"]
    at: int


class KeysLowEvent(_Event, frozen=True, tag="keys_low"):
    """A provider's user has few unclaimed one-time keys left."""

    user: str
    one_time_key_count: int


class IdentityChangedEvent(_Event, frozen=True, tag="identity_changed"):
    """A user's identity key changed: sessions with the old key are to be distrusted."""

    user: str
    identity_key: str
    signing_key: str


class GroupMessageEvent(_Event, frozen=True, tag="group_message"):
    """A group message for one third-party member `recipient` (DESIGN §4.10): Megolm
    ciphertext (`encrypted`), or MIMI `content` where the hub's policy allows plaintext."""

    id: str
    group: str
    sender: str
    recipient: str
    sent_at: int
    encrypted: dict[str, Any] | None = None
    content: dict[str, Any] | None = None


class RoomKeyEvent(_Event, frozen=True, tag="room_key"):
    """A member's Megolm session shared with third-party member `recipient`, over Olm."""

    group: str
    sender: str
    recipient: str
    session_id: str
    encrypted: dict[str, Any]


class GroupMember(msgspec.Struct, frozen=True, kw_only=True):
    uri: str
    role: Literal["admin", "member"]


class GroupMembershipEvent(_Event, frozen=True, tag="group_membership"):
    """The membership of `group` changed (or the group was made: epoch 0, everyone added)."""

    group: str
    by: str
    added: list[str]
    removed: list[str]
    epoch: int
    members: list[GroupMember]


Event = (
    MessageEvent
    | ReceiptEvent
    | TypingEvent
    | DeliveryFailedEvent
    | ConsentEvent
    | KeysLowEvent
    | IdentityChangedEvent
    | GroupMessageEvent
    | RoomKeyEvent
    | GroupMembershipEvent
)
EVENT_TYPES = ("message", "receipt", "typing", "delivery_failed", "consent", "keys_low",
               "identity_changed", "group_message", "room_key", "group_membership")  # fmt: skip

event_decoder = msgspec.json.Decoder(Event)
