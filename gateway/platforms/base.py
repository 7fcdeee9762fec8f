"""What the relay needs from a platform connector (DESIGN §4.8), and what it gives back.

The relay hands a platform one `Outgoing` item at a time (a message, receipt or typing signal
from a third-party user to a platform user); the platform raises `RetryableDelivery` when a
later attempt may succeed and `PermanentDelivery` when none will. What the platform's users
send comes back through the `InboundSink` (the relay's receiving side) given to the platform at
construction: platforms never import services.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal, Protocol

import msgspec
from msgspec import Meta

from gateway.uris import parse_user_uri

Kind = Literal["message", "receipt", "typing"]
# What the gateway hands a platform for one platform member of a group (DESIGN §4.10).
GroupKind = Literal["group_message", "room_key", "group_membership"]
SERVICES = ("whatsapp", "messenger", "instagram")


class DeliveryError(Exception):
    """A delivery attempt failed; `reason` is a short, content-free code."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RetryableDelivery(DeliveryError):
    """The platform is unreachable or overloaded: try again later."""


class PermanentDelivery(DeliveryError):
    """The platform refused the item for good (unknown user, invalid payload, ...)."""


class OlmMessage(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An Olm message (DESIGN §4.5): `body` is standard base64 of `to_parts()` bytes."""

    protocol: Literal["olm.v1"]
    type: Literal[0, 1]
    body: Annotated[str, Meta(min_length=1)]
    sender_key: Annotated[str, Meta(min_length=1, max_length=128)]


class SignedOneTimeKey(msgspec.Struct, frozen=True, kw_only=True):
    key_id: str
    key: str
    signature: str


class ClaimedBundle(msgspec.Struct, frozen=True, kw_only=True):
    """The `GET /v1/keys` answer (DESIGN §4.4): one one-time key claimed, or the fallback key."""

    user: str
    identity_key: str
    signing_key: str
    one_time_key: SignedOneTimeKey | None
    fallback_key: SignedOneTimeKey | None


class Outgoing(msgspec.Struct, frozen=True, kw_only=True):
    """One item for a platform user; `payload` by kind (see `gateway.service.relay`).

    message: `{"encrypted": {protocol, type, body, sender_key}}` or `{"native": [send objects]}`
    (plaintext content the gateway translated; one MIMI message may need several);
    receipt: `{"message_id", "status"}`; typing: `{"state"}`.
    """

    id: str
    kind: Kind
    service: str
    sender: str
    recipient: str
    sent_at: int
    payload: dict[str, Any]


class GroupOutgoing(msgspec.Struct, frozen=True, kw_only=True):
    """One group item for one platform member of a group hosted on `service` (DESIGN §4.10).

    group_message: `{"encrypted": {protocol: "megolm.v1", session_id, body, sender_key}}` or
    `{"native": [send objects]}` (hub with `e2ee = "optional"`, content the gateway translated);
    room_key: `{"session_id", "encrypted": {protocol: "olm.v1", type, body, sender_key}}` (an Olm
    message to `recipient` whose plaintext is `{"room_key": {group, session_id, session_key}}`);
    group_membership: `{"by", "added", "removed", "epoch", "members": [{uri, role}]}`.
    `id` is the gateway's id of the item (a platform deduplicates on it); `sender` is the member
    who sent or shared (`by` for membership changes).
    """

    id: str
    kind: GroupKind
    service: str
    group: str
    sender: str
    recipient: str
    sent_at: int
    payload: dict[str, Any]


class Inbound(msgspec.Struct, frozen=True, kw_only=True):
    """One item a platform user sends to a third-party user; fields as in `Outgoing`.

    message: `{"encrypted": {...}}` (E2EE) or `{"content": <MIMI JSON>}`;
    receipt: `{"message_id", "status"}`; typing: `{"state"}`. `native_id` is the platform's own
    id of the item (idempotency: the same native id is accepted once).
    """

    native_id: str
    kind: Kind
    service: str
    sender: str
    recipient: str
    sent_at: int
    payload: dict[str, Any]


class InboundSink(Protocol):
    """The relay's receiving side, as platforms reach it."""

    async def receive(self, item: Inbound) -> str:
        """Accept what a platform user sends; return the gateway id of the accepted item."""
        ...


class GroupSink(Protocol):
    """The gateway's group service, as a platform's own users act in groups (DESIGN §4.10).

    Each call is idempotent on `native_id` (the platform's id of the action) and answers like
    the provider-facing routes: the same checks (membership, consent, stale sessions) apply.
    """

    async def create_group(
        self, *, native_id: str, service: str, creator: str, name: str, members: list[str]
    ) -> dict[str, Any]:
        """Create a group hosted on `service` by platform user `creator`; return its state."""
        ...

    async def share_room_keys(
        self, *, native_id: str, group: str, sender: str, session_id: str,
        shares: list[dict[str, Any]],
    ) -> None:  # fmt: skip
        """Relay `shares` ([{to, encrypted: olm.v1}]) of `sender`'s Megolm session `session_id`."""
        ...

    async def send_group_message(
        self, *, native_id: str, group: str, sender: str, sent_at: int, payload: dict[str, Any]
    ) -> str:
        """Accept a group message (`{"encrypted": megolm.v1}` or `{"content": MIMI JSON}`)."""
        ...

    async def group_state(self, group: str) -> dict[str, Any] | None:
        """The group's current state (`{group, service, name, members, epoch}`), or None."""
        ...


# The key directory's claim for third-party users (INTERFACES.md §2).
ThirdPartyKeys = Callable[[str], Awaitable[ClaimedBundle | None]]
# Consent of a platform user: (user_uri, client ids or "all"), set by the platform's side.
ConsentSetter = Callable[[str, "list[str] | Literal['all']"], Awaitable[None]]


class Uplink:
    """The gateway as the sandbox's users reach it: the relay, the third-party key claim and
    the group service (`bind_groups`, a `GroupSink` it forwards to).

    The sandbox and the gateway call each other (the relay delivers to the sandbox; its users send
    through the relay and claim third-party keys from the key directory), so the wiring makes this
    first, gives it to the sandbox at construction and binds it once, when the relay and the key
    directory exist; it is immutable after. Traffic before the binding, or a second binding, is
    a wiring error, never a skipped step.
    """

    def __init__(self) -> None:
        self._relay: InboundSink | None = None
        self._keys: ThirdPartyKeys | None = None
        self._groups: GroupSink | None = None

    def bind(self, relay: InboundSink, third_party_keys: ThirdPartyKeys) -> None:
        """Connect to the relay and the key directory; once."""
        if self._relay is not None:
            raise RuntimeError("the uplink is bound already")
        self._relay, self._keys = relay, third_party_keys

    async def receive(self, item: Inbound) -> str:
        if self._relay is None:
            raise RuntimeError("platform traffic before the relay was wired")
        return await self._relay.receive(item)

    async def third_party_keys(self, user_uri: str) -> ClaimedBundle | None:
        if self._keys is None:
            raise RuntimeError("a key claim before the key directory was wired")
        return await self._keys(user_uri)

    # -- groups: the gateway's group service (a GroupSink), bound once like the relay ------

    def bind_groups(self, sink: GroupSink) -> None:
        """Connect to the group service; once."""
        if self._groups is not None:
            raise RuntimeError("the uplink's group service is bound already")
        self._groups = sink

    def _group_sink(self) -> GroupSink:
        if self._groups is None:
            raise RuntimeError("group traffic before the group service was wired")
        return self._groups

    async def create_group(
        self, *, native_id: str, service: str, creator: str, name: str, members: list[str]
    ) -> dict[str, Any]:
        return await self._group_sink().create_group(
            native_id=native_id, service=service, creator=creator, name=name, members=members
        )

    async def share_room_keys(
        self, *, native_id: str, group: str, sender: str, session_id: str,
        shares: list[dict[str, Any]],
    ) -> None:  # fmt: skip
        await self._group_sink().share_room_keys(
            native_id=native_id, group=group, sender=sender, session_id=session_id, shares=shares
        )

    async def send_group_message(
        self, *, native_id: str, group: str, sender: str, sent_at: int, payload: dict[str, Any]
    ) -> str:
        return await self._group_sink().send_group_message(
            native_id=native_id, group=group, sender=sender, sent_at=sent_at, payload=payload
        )

    async def group_state(self, group: str) -> dict[str, Any] | None:
        return await self._group_sink().group_state(group)


class Platform(Protocol):
    """A connector to the three services (sandbox or http)."""

    name: str

    async def deliver(self, item: Outgoing) -> None:
        """Hand `item` to the service; raise RetryableDelivery or PermanentDelivery."""
        ...

    async def deliver_group(self, item: GroupOutgoing) -> None:
        """Hand one group item to its platform member; raise as `deliver` does."""
        ...

    async def claim_key_bundle(self, user_uri: str) -> ClaimedBundle | None:
        """Claim a platform user's keys (one one-time key, never twice); None if unknown."""
        ...

    async def user_exists(self, user_uri: str) -> bool:
        """Whether `user_uri` is a user of this platform."""
        ...

    async def close(self) -> None:
        """Release what the connector holds."""
        ...


def service_of(uri: str) -> str | None:
    """The service of a platform user URI (`mimi://whatsapp/u/...`), else None."""
    parsed = parse_user_uri(uri)
    return parsed.authority if parsed is not None and parsed.is_platform else None


def provider_of(uri: str) -> str | None:
    """The client id of a third-party user URI (`mimi://<client_id>/u/...`), else None."""
    parsed = parse_user_uri(uri)
    return parsed.authority if parsed is not None and not parsed.is_platform else None
