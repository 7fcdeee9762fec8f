"""What the SDK's event iterator yields: decrypted messages, receipts, typing, notices."""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.content import ExternalPart, MimiContent, SinglePart, walk_parts


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """A decrypted message; `native` is the service's object it arrived as (platform senders)."""

    id: str
    sender: str
    recipient: str
    sent_at: int
    content: MimiContent
    native: dict[str, Any] | None
    raw: dict[str, Any]  # the event as the gateway delivered it (ciphertext)
    group: str | None = None  # a group message: the group's URI (`recipient` is our member)

    @property
    def text(self) -> str | None:
        """The first text part, if any."""
        for part in walk_parts(self.content.nested_part):
            if isinstance(part, SinglePart) and part.content_type.startswith("text/"):
                return part.content.decode(errors="replace")
        return None

    @property
    def attachments(self) -> list[ExternalPart]:
        """The external (encrypted media) parts."""
        return [p for p in walk_parts(self.content.nested_part) if isinstance(p, ExternalPart)]


class Receipt(msgspec.Struct, frozen=True, kw_only=True):
    """A delivered/read status of a message this provider's user sent."""

    message_id: str
    sender: str
    recipient: str
    status: str
    raw: dict[str, Any]


class Typing(msgspec.Struct, frozen=True, kw_only=True):
    sender: str
    recipient: str
    state: str
    raw: dict[str, Any]


class GroupChange(msgspec.Struct, frozen=True, kw_only=True):
    """A group was made or its membership changed (`epoch` grew): the next message one of our
    members sends to it goes under a new Megolm session."""

    group: str
    by: str
    added: list[str]
    removed: list[str]
    epoch: int
    members: list[dict[str, str]]
    raw: dict[str, Any]


class Notice(msgspec.Struct, frozen=True, kw_only=True):
    """Any other event (keys_low, identity_changed, consent, delivery_failed, undecryptable)."""

    type: str
    raw: dict[str, Any]


Event = Message | Receipt | Typing | GroupChange | Notice
