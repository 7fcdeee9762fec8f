"""The sandbox platforms (DESIGN §4.8): simulated WhatsApp, Messenger and Instagram users.

Each user has its own Olm account. What it receives it decrypts and keeps, as the native
webhook envelope its client would get; it answers with a `delivered` status as a real client
does. What it sends it translates to its service's send object and encrypts for the
third-party recipient, whose keys it claims through the injected key directory callable.
An outage switch per service lets integrators watch the gateway retry.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import random
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import msgspec
import structlog
import vodozemac

from gateway.clock import now_ms
from gateway.content import ContentError, content_from_json
from gateway.crypto import DecryptionFailed, OlmCiphertext, OlmParty
from gateway.errors import (
    Conflict,
    ContentRejected,
    Forbidden,
    NotFound,
    UnknownRecipient,
    ValidationFailed,
)
from gateway.platforms.base import (
    SERVICES,
    ClaimedBundle,
    ConsentSetter,
    GroupOutgoing,
    GroupSink,
    Inbound,
    InboundSink,
    Outgoing,
    PermanentDelivery,
    RetryableDelivery,
    ThirdPartyKeys,
    Uplink,
    service_of,
)
from gateway.platforms.native import (
    TranslationError,
    content_to_send,
    group_membership_webhooks,
    group_send_object_webhooks,
    receipt_webhook,
    send_object_webhook,
)
from gateway.platforms.sandbox_state import (
    REPLENISH_BELOW,
    SandboxState,
    SandboxUser,
    StaleAccount,
)
from gateway.translate.groups import split_group_uri

log = structlog.get_logger(__name__)

# Tries at an Olm account another replica keeps changing, before giving up for now.
ACCOUNT_ATTEMPTS = 20


class SandboxPlatform:
    """The embedded Platform; what its users send reaches the relay through `inbound`."""

    name = "sandbox"

    def __init__(
        self,
        state: SandboxState,
        *,
        inbound: InboundSink,
        third_party_keys: ThirdPartyKeys,
        set_consent: ConsentSetter,
        groups: GroupSink | None = None,
    ) -> None:
        self.state = state
        self.inbound = inbound
        # The group service; by default the uplink's (bound with `Uplink.bind_groups`).
        self.groups = groups if groups is not None or not isinstance(inbound, Uplink) else inbound
        self.third_party_keys = third_party_keys
        self.set_consent = set_consent
        self.down: set[str] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def _lock(self, uri: str) -> asyncio.Lock:
        # An Olm account's sessions change with each message: one message per user at a time.
        return self._locks.setdefault(uri, asyncio.Lock())

    # -- admin ----------------------------------------------------------------------------

    async def create_user(
        self, service: str, native_id: str, name: str, consent: list[str] | Literal["all"]
    ) -> str:
        """Create a simulated user with its Olm account and consents; return its URI."""
        uri = f"mimi://{service}/u/{native_id}"
        created = await self.state.create(
            SandboxUser(uri=uri, service=service, native_id=native_id, name=name)
        )
        if not created:
            raise Conflict("This sandbox user exists already.", field="$.id")
        await self.set_consent(uri, consent)
        return uri

    async def change_consent(self, uri: str, consent: list[str] | Literal["all"]) -> None:
        """The user changes whom they let reach them (Art. 7(7))."""
        await self._user(uri, "$.user")
        await self.set_consent(uri, consent)

    def set_outage(self, service: str, down: bool) -> None:
        """Simulate the service being unreachable (deliveries then fail as retryable)."""
        (self.down.add if down else self.down.discard)(service)

    async def inbox(self, uri: str) -> list[dict[str, Any]]:
        await self._user(uri, "user")
        return await self.state.inbox(uri)

    async def _user(self, uri: str, field: str) -> SandboxUser:
        user = await self.state.user(uri)
        if user is None:
            raise NotFound("No such sandbox user.", field=field)
        return user

    # -- Platform -------------------------------------------------------------------------

    async def user_exists(self, user_uri: str) -> bool:
        return await self.state.user(user_uri) is not None

    async def claim_key_bundle(self, user_uri: str) -> ClaimedBundle | None:
        bundle, left = await self.state.claim(user_uri)
        if bundle is not None and left < REPLENISH_BELOW:
            # Another replica using the account meanwhile: the next claim replenishes.
            with contextlib.suppress(StaleAccount):
                await self.state.replenish(user_uri)
        return bundle

    async def deliver(self, item: Outgoing) -> None:
        if item.service in self.down:
            raise RetryableDelivery("platform_unavailable")
        user = await self.state.user(item.recipient)
        if user is None:
            raise PermanentDelivery("unknown_recipient")
        if item.kind == "typing":
            return  # shown live on a device, never stored
        if item.kind == "receipt":
            try:
                envelope = receipt_webhook(
                    user.service, message_id=item.payload["message_id"],
                    status=item.payload["status"], sender=item.sender, recipient=user.uri,
                    sent_at=item.sent_at, key=self.state.key,
                )  # fmt: skip
            except TranslationError:
                return  # the service has no native form for it (Instagram: no delivered)
            await self.state.store.write(
                "sandbox_receive",
                lambda tx: self.state.deliver_in(tx, user.uri, item.id, envelope),
            )
            return
        await self._with_account(user, functools.partial(self._receive_message, user, item))
        self._acknowledge(user, item)

    async def _with_account(
        self, user: SandboxUser, attempt: Callable[[], Awaitable[None]]
    ) -> None:
        """Run a step that changes the user's Olm account, again while another replica races."""
        async with self._lock(user.uri):
            for _ in range(ACCOUNT_ATTEMPTS):
                try:
                    await attempt()
                    return
                except StaleAccount:  # another replica decrypted for this user meanwhile
                    await asyncio.sleep(random.uniform(0.005, 0.03))
        raise RetryableDelivery("recipient_busy")

    async def _receive_message(self, user: SandboxUser, item: Outgoing) -> None:
        if await self.state.has_received(user.uri, item.id):
            return  # a redelivery: the Olm message was consumed the first time
        party: OlmParty | None = None
        version = 0
        if "encrypted" in item.payload:
            party, version = await self.state.party(user.uri)
            wire = item.payload["encrypted"]
            try:
                plaintext = party.decrypt(
                    OlmCiphertext.from_wire(wire["type"], wire["body"], wire["sender_key"])
                )
                message = msgspec.json.decode(plaintext)
            except (DecryptionFailed, msgspec.DecodeError) as exc:
                if isinstance(exc, DecryptionFailed):
                    # vodozemac changes nothing when it cannot decrypt: the account still holds.
                    self.state.put_back(user.uri, party, version)
                if await self.state.has_received(user.uri, item.id):
                    return  # another replica got it in between: its session was consumed
                raise PermanentDelivery("undecryptable") from None
            objects = [message]
        else:
            objects = item.payload["native"]
        try:
            envelopes = [
                send_object_webhook(
                    user.service, obj, sender=item.sender, recipient=user.uri,
                    message_id=item.id if i == 0 else f"{item.id}.{i}", sent_at=item.sent_at,
                    key=self.state.key,
                )
                for i, obj in enumerate(objects)
            ]  # fmt: skip
        except TranslationError:
            raise PermanentDelivery("not_a_native_message") from None

        async def unit(tx: Any) -> None:
            if party is not None:  # first: the account's row lock orders duplicate deliveries
                await self.state.save_party_in(tx, user.uri, party, version)
            for i, envelope in enumerate(envelopes):
                inbox_id = item.id if i == 0 else f"{item.id}.{i}"
                await self.state.deliver_in(tx, user.uri, inbox_id, envelope)

        await self.state.store.write("sandbox_receive", unit)

    def _acknowledge(self, user: SandboxUser, item: Outgoing) -> None:
        """Send the `delivered` status back, as the user's client would, off the delivery path."""
        receipt = Inbound(
            native_id=f"{item.id}:delivered", kind="receipt", service=user.service,
            sender=user.uri, recipient=item.sender, sent_at=now_ms(),
            payload={"message_id": item.id, "status": "delivered"},
        )  # fmt: skip
        task = asyncio.get_running_loop().create_task(self._send_receipt(receipt))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_receipt(self, receipt: Inbound) -> None:
        try:
            await self.inbound.receive(receipt)
        except Exception as exc:  # a status is best effort, as on the real platforms
            log.warning("sandbox_receipt_failed", error=type(exc).__name__)

    # -- a simulated user sends -----------------------------------------------------------

    async def send(self, sender: str, recipient: str, content: dict[str, Any]) -> str:
        """Translate, encrypt for the third-party recipient (or the group) and hand on."""
        if is_group_uri(recipient):
            return await self.send_group(sender, recipient, content)
        user = await self._user(sender, "$.from")
        if service_of(recipient) in SERVICES:
            raise ValidationFailed("The recipient must be a third-party user.", field="$.to")
        message = _one_send_object(user.service, content)
        bundle = await self.third_party_keys(recipient)
        if bundle is None:
            raise UnknownRecipient("No such third-party user has published keys.", field="$.to")
        async with self._lock(user.uri):
            (ciphertext,) = await self._encrypt_for(user, [bundle], msgspec.json.encode(message))
        return await self.inbound.receive(
            Inbound(
                native_id=f"sbx_{uuid.uuid4().hex}", kind="message", service=user.service,
                sender=user.uri, recipient=recipient, sent_at=now_ms(),
                payload={"encrypted": ciphertext.to_wire()},
            )
        )  # fmt: skip

    async def _encrypt_for(
        self, user: SandboxUser, bundles: list[ClaimedBundle], plaintext: bytes
    ) -> list[OlmCiphertext]:
        """Olm-encrypt `plaintext` to each claimed bundle and save the account (lock held)."""
        for _ in range(ACCOUNT_ATTEMPTS):
            party, version = await self.state.party(user.uri)
            ciphertexts = []
            for bundle in bundles:
                otk = bundle.one_time_key or bundle.fallback_key
                one_time_key = None if otk is None else otk.key
                ciphertexts.append(
                    party.encrypt(bundle.identity_key, plaintext, one_time_key=one_time_key)
                )
            try:
                await self.state.store.write(
                    "sandbox_send",
                    functools.partial(self.state.save_party_in, uri=user.uri, party=party,
                                      version=version),
                )  # fmt: skip
                return ciphertexts
            except StaleAccount:  # another replica used this account meanwhile
                await asyncio.sleep(random.uniform(0.005, 0.03))
        raise Conflict("This sandbox user is busy; try again.", field="$.from")

    # -- groups (DESIGN §4.10) ------------------------------------------------------------

    def _group_sink(self) -> GroupSink:
        if self.groups is None:
            raise RuntimeError("group traffic before the group service was wired")
        return self.groups

    async def create_group(
        self, service: str, creator: str, name: str, members: list[str]
    ) -> dict[str, Any]:
        """A simulated user creates a group hosted on its service; the group's state."""
        user = await self._user(creator, "$.creator")
        if user.service != service:
            raise ValidationFailed(
                "The creator must be a user of the group's service.", field="$.creator"
            )
        return await self._group_sink().create_group(
            native_id=f"sbx_{uuid.uuid4().hex}", service=service, creator=user.uri, name=name,
            members=members,
        )  # fmt: skip

    async def send_group(self, sender: str, group: str, content: dict[str, Any]) -> str:
        """Share a Megolm session if the epoch moved, then send one Megolm message."""
        user = await self._user(sender, "$.from")
        sink = self._group_sink()
        state = await sink.group_state(group)
        if state is None:
            raise NotFound("No such group.", field="$.to")
        members = [m["uri"] for m in state["members"]]
        if user.uri not in members:
            raise Forbidden("The sender is not a member of this group.", field="$.from")
        message = msgspec.json.encode(_one_send_object(state["service"], content))
        epoch = int(state["epoch"])
        keys = await self.state.keys(user.uri)
        assert keys is not None
        async with self._lock(user.uri):
            current = await self.state.outbound_session(user.uri, group)
            if current is not None and current[0] == epoch:
                session = current[1]
            else:  # a new epoch (or a first message): a new session, shared with the members
                session = vodozemac.GroupSession()
                others = [uri for uri in members if uri != user.uri]
                await self._share_session(user, group, session, others)
            ciphertext = session.encrypt(message)
            await self.state.save_outbound_session(user.uri, group, epoch, session)
        encrypted = {
            "protocol": "megolm.v1", "session_id": session.session_id,
            "body": base64.b64encode(ciphertext.to_bytes()).decode(),
            "sender_key": keys.identity_key,
        }  # fmt: skip
        return await sink.send_group_message(
            native_id=f"sbx_{uuid.uuid4().hex}", group=group, sender=user.uri,
            sent_at=now_ms(), payload={"encrypted": encrypted},
        )  # fmt: skip

    async def _share_session(
        self, user: SandboxUser, group: str, session: vodozemac.GroupSession, others: list[str]
    ) -> None:
        """Claim each other member's keys and send each one the room key over Olm."""
        bundles = []
        for uri in others:
            platform_member = service_of(uri) in SERVICES
            bundle = await (self.claim_key_bundle if platform_member else self.third_party_keys)(
                uri
            )
            if bundle is None:
                raise UnknownRecipient("A member of the group has no keys.", field="$.to")
            bundles.append(bundle)
        share = {"room_key": {
            "group": group, "session_id": session.session_id,
            "session_key": session.session_key.to_base64(),
        }}  # fmt: skip
        ciphertexts = await self._encrypt_for(user, bundles, msgspec.json.encode(share))
        pairs = zip(others, ciphertexts, strict=True)
        await self._group_sink().share_room_keys(
            native_id=f"sbx_{uuid.uuid4().hex}", group=group, sender=user.uri,
            session_id=session.session_id,
            shares=[{"to": to, "encrypted": c.to_wire()} for to, c in pairs],
        )  # fmt: skip

    async def deliver_group(self, item: GroupOutgoing) -> None:
        if item.service in self.down:
            raise RetryableDelivery("platform_unavailable")
        user = await self.state.user(item.recipient)
        if user is None:
            raise PermanentDelivery("unknown_user")
        if await self.state.group_item_seen(user.uri, item.id):
            return  # a redelivery
        if item.kind == "room_key":
            await self._with_account(user, functools.partial(self._take_room_key, user, item))
        elif item.kind == "group_message":
            await self._take_group_message(user, item)
        else:
            await self._take_membership(user, item)

    async def _take_room_key(self, user: SandboxUser, item: GroupOutgoing) -> None:
        if await self.state.group_item_seen(user.uri, item.id):
            return  # taken in meanwhile: its Olm message was consumed then
        party, version = await self.state.party(user.uri)
        wire = item.payload.get("encrypted")
        try:
            if not isinstance(wire, dict) or wire.get("protocol") != "olm.v1":
                raise DecryptionFailed("not an Olm message")
            plaintext = party.decrypt(
                OlmCiphertext.from_wire(wire["type"], wire["body"], wire["sender_key"])
            )
        except (DecryptionFailed, KeyError, TypeError):
            self.state.put_back(user.uri, party, version)  # unchanged by a failed decryption
            if await self.state.group_item_seen(user.uri, item.id):
                return
            raise PermanentDelivery("undecryptable") from None
        session = _room_key_session(plaintext, item)

        async def unit(tx: Any) -> None:
            await self.state.save_party_in(tx, user.uri, party, version)
            if session is not None:
                await self.state.save_inbound_session_in(tx, user.uri, item.group, session)
            await self.state.mark_group_item_in(tx, user.uri, item.id)

        await self.state.store.write("sandbox_room_key", unit)
        if session is None:  # the Olm session stays (it is the sender's), the key is refused
            raise PermanentDelivery("bad_room_key")

    async def _take_group_message(self, user: SandboxUser, item: GroupOutgoing) -> None:
        objects: Any
        if "encrypted" in item.payload:
            wire = item.payload["encrypted"]
            session_id = wire.get("session_id") if isinstance(wire, dict) else None
            if not isinstance(session_id, str) or wire.get("protocol") != "megolm.v1":
                raise PermanentDelivery("undecryptable")
            session = await self.state.inbound_session(user.uri, item.group, session_id)
            if session is None:  # its room key precedes it in this member's queue
                raise PermanentDelivery("unknown_session")
            try:
                body = base64.b64decode(wire["body"], validate=True)
                decrypted = session.decrypt(vodozemac.MegolmMessage.from_bytes(body))
                objects = [msgspec.json.decode(bytes(decrypted.plaintext))]
            except (KeyError, TypeError, ValueError, binascii.Error, msgspec.DecodeError):
                raise PermanentDelivery("undecryptable") from None
        else:
            native = item.payload.get("native")
            if not isinstance(native, list):
                raise PermanentDelivery("not_a_native_message")
            objects = native
        try:
            envelopes = [
                envelope
                for i, obj in enumerate(objects)
                for envelope in group_send_object_webhooks(
                    user.service, obj, group=item.group, sender=item.sender, recipient=user.uri,
                    message_id=item.id if i == 0 else f"{item.id}.{i}", sent_at=item.sent_at,
                    key=self.state.key,
                )
            ]  # fmt: skip
        except TranslationError:
            raise PermanentDelivery("not_a_native_message") from None
        await self._keep_group_item(user, item, envelopes)

    async def _take_membership(self, user: SandboxUser, item: GroupOutgoing) -> None:
        change = item.payload
        try:
            epoch, members = int(change["epoch"]), list(change["members"])
            envelopes = group_membership_webhooks(
                user.service, group=item.group, member=user.uri, by=change.get("by"),
                added=list(change.get("added") or []), removed=list(change.get("removed") or []),
                sent_at=item.sent_at, key=self.state.key,
            )  # fmt: skip
        except (KeyError, TypeError, ValueError, TranslationError):
            raise PermanentDelivery("bad_membership") from None
        await self._keep_group_item(
            user, item, envelopes, view=(epoch, [dict(m) for m in members])
        )

    async def _keep_group_item(
        self,
        user: SandboxUser,
        item: GroupOutgoing,
        envelopes: list[dict[str, Any]],
        view: tuple[int, list[dict[str, Any]]] | None = None,
    ) -> None:
        async def unit(tx: Any) -> None:
            if view is not None:
                await self.state.save_group_view_in(tx, user.uri, item.group, *view)
            for i, envelope in enumerate(envelopes):
                inbox_id = item.id if i == 0 else f"{item.id}.{i}"
                await self.state.deliver_in(tx, user.uri, inbox_id, envelope)
            await self.state.mark_group_item_in(tx, user.uri, item.id)

        await self.state.store.write("sandbox_group_receive", unit)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def is_group_uri(uri: str) -> bool:
    try:
        split_group_uri(uri)
    except TranslationError:
        return False
    return True


def _one_send_object(service: str, content: dict[str, Any]) -> dict[str, Any]:
    """The one send object of `service` for MIMI content (422 naming the field otherwise)."""
    try:
        objects = content_to_send(service, content_from_json(content))
    except (ContentError, TranslationError) as exc:
        raise ContentRejected(exc.reason, field=f"$.content.{exc.field}") from None
    if len(objects) != 1:
        raise ContentRejected(
            f"This content takes {len(objects)} {service} messages; send one part.",
            field="$.content.nestedPart",
        )
    return objects[0]


def _room_key_session(
    plaintext: bytes, item: GroupOutgoing
) -> vodozemac.InboundGroupSession | None:
    """The inbound session of a room-key plaintext for this item's group and session, or None."""
    try:
        share = msgspec.json.decode(plaintext)["room_key"]
        if share["group"] != item.group or share["session_id"] != item.payload.get("session_id"):
            return None
        session = vodozemac.InboundGroupSession(vodozemac.SessionKey(share["session_key"]))
    except (KeyError, TypeError, ValueError, msgspec.DecodeError):
        return None
    return session if session.session_id == share["session_id"] else None
