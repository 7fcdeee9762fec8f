"""The sandbox platforms (DESIGN §4.8): simulated WhatsApp, Messenger and Instagram users.

Each user has its own Olm account. What it receives it decrypts and keeps, as the native
webhook envelope its client would get; it answers with a `delivered` status as a real client
does. What it sends it translates to its service's send object and encrypts for the
third-party recipient, whose keys it claims through the injected key directory callable.
An outage switch per service lets integrators watch the gateway retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import uuid
from typing import Any, Literal

import msgspec
import structlog

from gateway.clock import now_ms
from gateway.content import ContentError, content_from_json
from gateway.crypto import DecryptionFailed, OlmCiphertext, OlmParty
from gateway.errors import Conflict, ContentRejected, NotFound, UnknownRecipient, ValidationFailed
from gateway.platforms.base import (
    SERVICES,
    ClaimedBundle,
    ConsentSetter,
    Inbound,
    InboundSink,
    Outgoing,
    PermanentDelivery,
    RetryableDelivery,
    ThirdPartyKeys,
    service_of,
)
from gateway.platforms.native import (
    TranslationError,
    content_to_send,
    receipt_webhook,
    send_object_webhook,
)
from gateway.platforms.sandbox_state import (
    REPLENISH_BELOW,
    SandboxState,
    SandboxUser,
    StaleAccount,
)

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
    ) -> None:
        self.state = state
        self.inbound = inbound
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
        async with self._lock(user.uri):
            for _ in range(ACCOUNT_ATTEMPTS):
                try:
                    await self._receive_message(user, item)
                    break
                except StaleAccount:  # another replica decrypted for this user meanwhile
                    await asyncio.sleep(random.uniform(0.005, 0.03))
            else:
                raise RetryableDelivery("recipient_busy")
        self._acknowledge(user, item)

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
        """Translate, encrypt for the third-party recipient and hand to the relay."""
        user = await self._user(sender, "$.from")
        if service_of(recipient) in SERVICES:
            raise ValidationFailed("The recipient must be a third-party user.", field="$.to")
        try:
            objects = content_to_send(user.service, content_from_json(content))
        except (ContentError, TranslationError) as exc:
            raise ContentRejected(exc.reason, field=f"$.content.{exc.field}") from None
        if len(objects) != 1:
            raise ContentRejected(
                f"This content takes {len(objects)} {user.service} messages; send one part.",
                field="$.content.nestedPart",
            )
        message = objects[0]
        bundle = await self.third_party_keys(recipient)
        if bundle is None:
            raise UnknownRecipient("No such third-party user has published keys.", field="$.to")
        async with self._lock(user.uri):
            for _ in range(ACCOUNT_ATTEMPTS):
                party, version = await self.state.party(user.uri)
                otk = bundle.one_time_key or bundle.fallback_key
                ciphertext = party.encrypt(
                    bundle.identity_key,
                    msgspec.json.encode(message),
                    one_time_key=None if otk is None else otk.key,
                )
                try:
                    await self.state.store.write(
                        "sandbox_send",
                        functools.partial(self.state.save_party_in, uri=user.uri, party=party,
                                          version=version),
                    )  # fmt: skip
                    break
                except StaleAccount:  # another replica used this account meanwhile
                    await asyncio.sleep(random.uniform(0.005, 0.03))
            else:
                raise Conflict("This sandbox user is busy; try again.", field="$.from")
        return await self.inbound.receive(
            Inbound(
                native_id=f"sbx_{uuid.uuid4().hex}", kind="message", service=user.service,
                sender=user.uri, recipient=recipient, sent_at=now_ms(),
                payload={"encrypted": ciphertext.to_wire()},
            )
        )  # fmt: skip

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
