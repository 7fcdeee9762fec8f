"""The relay: accept messages, receipts and typing from providers and from platforms.

A 2xx means the envelope, its outbox row (or its provider event) and its audit record are in
one committed unit (DESIGN §2). Idempotency key: (client_id, client message id), with the
SHA-256 of the canonical body, so a retry is answered identically and a reuse with another
body is refused (409), across restarts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import structlog

from gateway import metrics
from gateway.clock import now_ms
from gateway.config import Config
from gateway.errors import (
    E2EERequired,
    GatewayError,
    IdempotencyConflict,
    LimitExceeded,
    Overloaded,
    SenderNotOwned,
    UnknownRecipient,
    ValidationFailed,
)
from gateway.ids import new_id
from gateway.platforms.base import Inbound, Platform, provider_of, service_of
from gateway.service.audit.log import AuditLog
from gateway.service.consent import ConsentRegistry
from gateway.service.event_types import MessageEvent, ReceiptEvent, TypingEvent
from gateway.service.events import EventQueue
from gateway.service.payload_seal import PayloadSealer
from gateway.service.relay_content import native_send_objects
from gateway.service.relay_types import (
    LookupHit,
    LookupIn,
    LookupOut,
    MessageIn,
    ReceiptIn,
    TypingIn,
)
from gateway.store import Store, Tx, messages, outbox
from gateway.store.messages import Envelope

log = structlog.get_logger(__name__)
_canonical = msgspec.json.Encoder(order="sorted")
AuditHook = Callable[[Tx], Awaitable[object]]
BACKLOG_CACHE_S = 1.0


def digest_of(obj: Any) -> str:
    """SHA-256 of the canonical JSON of a decoded body (key order and spacing do not count)."""
    return hashlib.sha256(_canonical.encode(obj)).hexdigest()


def check_ciphertext(body: str, limit: int) -> None:
    """Refuse (422, naming `$.encrypted.body`) a body that is not base64 or is over `limit`."""
    try:
        size = len(base64.b64decode(body, validate=True))
    except (binascii.Error, ValueError):
        raise ValidationFailed(
            "`body` must be standard base64.", field="$.encrypted.body"
        ) from None
    if size > limit:
        raise LimitExceeded(
            f"Ciphertext is limited to {limit} bytes.", field="$.encrypted.body", limit=limit
        )


@dataclass(frozen=True, slots=True)
class _Taking:
    """A platform item checked and ready to take: its write unit returns (id, fresh)."""

    item: Inbound
    client_id: str
    gateway_id: str
    unit: Callable[[Tx], Awaitable[tuple[str, bool]]]


class Relay:
    """Accepts traffic in both directions and queues it for delivery."""

    def __init__(
        self,
        store: Store,
        config: Config,
        platform: Platform,
        consent: ConsentRegistry,
        events: EventQueue,
        *,
        outbox_depth: Callable[[], int],
        on_outbox: Callable[[], None],
        audit_events: AuditLog,
        sealer: PayloadSealer,
    ) -> None:
        self.store = store
        self.sealer = sealer
        self.config = config
        self.platform = platform
        self.consent = consent
        self.events = events
        self._outbox_depth = outbox_depth
        self._on_outbox = on_outbox
        self.audit_events = audit_events
        self._backlogs: dict[str, tuple[float, int]] = {}

    # -- checks ---------------------------------------------------------------------------

    async def check_capacity(self, client_id: str) -> None:
        """Refuse new work (503) past the outbox bound or this provider's event backlog."""
        limits = self.config.relay
        if self._outbox_depth() >= limits.max_outbox:
            raise Overloaded("The delivery queue is full.", retry_after=limits.retry_after_s)
        if await self.backlog(client_id) >= limits.max_provider_backlog:
            raise Overloaded(
                "Too many undelivered events for this provider; consume them first.",
                retry_after=limits.retry_after_s,
            )

    async def backlog(self, client_id: str) -> int:
        """The provider's event backlog, counted at most once a second."""
        hit = self._backlogs.get(client_id)
        now = time.monotonic()
        if hit is None or hit[0] <= now:
            hit = (now + BACKLOG_CACHE_S, await self.events.backlog(client_id))
            self._backlogs[client_id] = hit
        return hit[1]

    async def _route(self, client_id: str, sender: str, recipient: str) -> str:
        """Check sender ownership and recipient visibility; return the recipient's service."""
        if provider_of(sender) != client_id:
            raise SenderNotOwned(
                "`from` must be one of your own users: mimi://<your client_id>/u/<id>.",
                field="$.from",
            )
        service = service_of(recipient)
        enabled = service is not None and self.config.services[service].enabled
        if (
            service is None
            or not enabled
            or not await self.consent.allows(recipient, client_id)
            or not await self.platform.user_exists(recipient)
        ):
            raise UnknownRecipient("No such user is reachable by you.", field="$.to")
        return service

    def _payload(self, service: str, msg: MessageIn) -> dict[str, Any]:
        """What the platform receives: ciphertext as is, or plaintext translated to native."""
        given = [
            f for f in ("encrypted", "content", "content_cbor") if getattr(msg, f) is not None
        ]
        if len(given) != 1:
            raise ValidationFailed(
                "Give exactly one of `encrypted`, `content`, `content_cbor`.",
                field=f"$.{given[1]}" if given else "$.encrypted",
            )
        if msg.encrypted is None:
            if self.config.services[service].e2ee == "required":
                raise E2EERequired(
                    f"{service} requires end-to-end encryption: send `encrypted`.",
                    field="$.encrypted",
                )
            return {"native": native_send_objects(service, msg.content, msg.content_cbor)}
        check_ciphertext(msg.encrypted.body, self.config.relay.max_ciphertext_bytes)
        return {"encrypted": msgspec.to_builtins(msg.encrypted)}

    # -- from providers -------------------------------------------------------------------

    async def send_message(
        self, client_id: str, msg: MessageIn, *, audit: AuditHook | None = None
    ) -> str:
        """Accept a provider's message; return the gateway id (the same on a retry)."""
        service = await self._route(client_id, msg.sender, msg.recipient)
        payload = self._payload(service, msg)
        return await self._accept(
            client_id, msg.id, digest_of(msg), "message", service, msg.sender, msg.recipient,
            msg.sent_at, payload, audit,
        )  # fmt: skip

    async def send_receipt(
        self, client_id: str, receipt: ReceiptIn, *, audit: AuditHook | None = None
    ) -> str:
        """Accept a read/delivered receipt for a message a platform user sent."""
        service = await self._route(client_id, receipt.sender, receipt.recipient)
        payload = {"message_id": receipt.message_id, "status": receipt.status}
        key = f"receipt:{receipt.message_id}:{receipt.status}"
        return await self._accept(
            client_id, key, digest_of(receipt), "receipt", service, receipt.sender,
            receipt.recipient, now_ms(), payload, audit,
        )  # fmt: skip

    async def send_typing(
        self, client_id: str, typing: TypingIn, *, audit: AuditHook | None = None
    ) -> str:
        """Accept a typing signal (never retried by providers: a fresh key each time)."""
        service = await self._route(client_id, typing.sender, typing.recipient)
        key = f"typing:{new_id()}"
        return await self._accept(
            client_id, key, digest_of(typing), "typing", service, typing.sender,
            typing.recipient, now_ms(), {"state": typing.state}, audit,
        )  # fmt: skip

    async def _accept(
        self,
        client_id: str,
        key: str,
        digest: str,
        kind: str,
        service: str,
        sender: str,
        recipient: str,
        sent_at: int,
        payload: dict[str, Any],
        audit: AuditHook | None,
    ) -> str:
        await self.check_capacity(client_id)
        body = msgspec.json.encode(payload)
        gateway_id = f"gw_{new_id()}"
        envelope = Envelope(
            id=gateway_id, client_id=client_id, client_msg_id=key, digest=digest, kind=kind,
            service=service, sender=sender, recipient=recipient, sent_at=sent_at, size=len(body),
        )  # fmt: skip
        at = now_ms()
        sealed = await self.sealer.seal(gateway_id, body, at)

        async def unit(tx: Tx) -> tuple[str, bool]:
            conversation = f"{sender}\n{recipient}"
            known = await outbox.accept_outbound(tx, envelope, sealed, at, conversation)
            if known is not None:
                if known.digest != digest:
                    raise IdempotencyConflict("This id was used with another body.", field="$.id")
                return known.id, False
            if audit is not None:
                await audit(tx)
            tx.on_commit(self._on_outbox)
            tx.notify(outbox.TOPIC)  # other replicas' delivery workers
            return gateway_id, True

        result, fresh = await self.store.write(f"relay_accept_{kind}", unit)
        if fresh:
            if kind == "message":
                type_ = "encrypted" if "encrypted" in payload else "plaintext"
                metrics.MESSAGES_ACCEPTED.labels(service, type_, "to_platform").inc()
            # On the request's own log line (request_handled), not one more line per message.
            structlog.contextvars.bind_contextvars(service=service, kind=kind, size=len(body))
        return result

    async def lookup(self, client_id: str, query: LookupIn) -> LookupOut:
        """The URIs of the identifiers whose users consented to `client_id`."""
        hits = []
        for identifier in query.identifiers:
            native = identifier.strip()
            if query.service == "whatsapp":  # phone numbers are written with or without '+'
                native = native.removeprefix("+").replace(" ", "")
            uri = f"mimi://{query.service}/u/{native}"
            if await self.consent.allows(uri, client_id) and await self.platform.user_exists(uri):
                hits.append(LookupHit(identifier=identifier, uri=uri))
        return LookupOut(users=hits)

    # -- from platforms -------------------------------------------------------------------

    async def receive(self, item: Inbound) -> str:
        """Accept what a platform user sends to a third-party user; it becomes an event."""
        await self._check_receive(item)
        taken = self._taking(item)
        result, fresh = await self.store.write(f"relay_receive_{item.kind}", taken.unit)
        self._took(taken, fresh)
        return result

    async def receive_many(self, items: list[Inbound]) -> list[str | GatewayError]:
        """Accept a platform webhook's items in one write unit, in their order: for each, its
        gateway id, or the refusal that is its own (the others are taken all the same)."""
        answers: list[str | GatewayError] = []
        takings: dict[int, _Taking] = {}  # index in `items` -> its taking
        for index, item in enumerate(items):
            try:
                await self._check_receive(item)
            except GatewayError as exc:
                answers.append(exc)
                continue
            takings[index] = self._taking(item)
            answers.append("")

        async def unit(tx: Tx) -> list[tuple[str, bool]]:
            return [await taking.unit(tx) for taking in takings.values()]

        if takings:
            results = await self.store.write("relay_receive_batch", unit)
            for (index, taking), (gateway_id, fresh) in zip(takings.items(), results, strict=True):
                self._took(taking, fresh)
                answers[index] = gateway_id
        return answers

    async def _check_receive(self, item: Inbound) -> None:
        client_id = provider_of(item.recipient)
        if client_id is None or not await self.consent.allows(item.sender, client_id):
            raise UnknownRecipient("No such third-party user is reachable.", field="$.to")
        await self.check_capacity(client_id)

    def _taking(self, item: Inbound) -> _Taking:
        """The write unit that takes `item` (its checks passed: `_check_receive`)."""
        client_id = provider_of(item.recipient)
        assert client_id is not None
        key = f"in:{item.service}:{item.kind}:{item.native_id}"
        digest = digest_of(item)
        gateway_id = f"gw_{new_id()}"

        envelope = Envelope(
            id=gateway_id, client_id=client_id, client_msg_id=key, digest=digest,
            kind=item.kind, service=item.service, sender=item.sender, recipient=item.recipient,
            sent_at=item.sent_at, size=len(msgspec.json.encode(item.payload)),
        )  # fmt: skip

        async def unit(tx: Tx) -> tuple[str, bool]:
            event = await self._event_for(tx, gateway_id, item)
            if event is None:  # a receipt for no message of this provider's users
                return gateway_id, False
            known = await messages.add_inbound(tx, envelope, now_ms())
            if known is not None:  # the platform sent this one before
                return known.id, False
            await self.events.append_in(tx, client_id, event)
            await self.audit_events.event_in(
                tx,
                action="message.deliver",
                subjects=[item.sender, item.recipient],
                attrs={
                    "service": item.service,
                    "kind": item.kind,
                    "direction": "to_provider",
                    "provider": client_id,  # the exchange matrix of the compliance report
                },
            )
            return gateway_id, True

        return _Taking(item, client_id, gateway_id, unit)

    def _took(self, taking: _Taking, fresh: bool) -> None:
        item, client_id = taking.item, taking.client_id
        hit = self._backlogs.get(client_id)
        if fresh and hit is not None:
            # It just grew by one: counted in memory (a COUNT per receipt cost more than the
            # receipt); recounted from the table within BACKLOG_CACHE_S as before.
            self._backlogs[client_id] = (hit[0], hit[1] + 1)
        if fresh and item.kind == "message":
            type_ = "encrypted" if "encrypted" in item.payload else "plaintext"
            metrics.MESSAGES_ACCEPTED.labels(item.service, type_, "to_provider").inc()
            # Handed to the provider's event queue: that is its delivery.
            metrics.message_delivered(item.service, type_, "to_provider", now_ms())

    async def _event_for(
        self, tx: Tx, gateway_id: str, item: Inbound
    ) -> MessageEvent | ReceiptEvent | TypingEvent | None:
        p = item.payload
        common = {"sender": item.sender, "recipient": item.recipient}
        if item.kind == "message":
            return MessageEvent(
                id=gateway_id, sent_at=item.sent_at, encrypted=p.get("encrypted"),
                content=p.get("content"), **common,
            )  # fmt: skip
        if item.kind == "typing":
            return TypingEvent(state=p["state"], at=item.sent_at, **common)
        # A receipt names our message; the provider knows it by its own id.
        own = await messages.client_msg_id_of(tx, p["message_id"], item.recipient)
        if own is None:
            return None
        return ReceiptEvent(message_id=own, status=p["status"], at=item.sent_at, **common)
