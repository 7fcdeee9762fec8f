"""Webhooks from the real services (`http` platform): verified, translated, handed to the relay.

Meta signs each webhook with `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw
body)>`; it is checked in constant time before anything is parsed. Olm messages travel in the
place of content (see gateway.platforms.http) and are taken out first; what remains is a
standard native webhook for the translators. Plaintext is accepted only from services whose
E2EE policy is `optional`.

Two exchanges go beyond Meta's webhooks, for a platform whose users encrypt to third-party users
(the standalone sandbox, DESIGN §4.8): a consent webhook (`{"object": "consent", "entry":
[{"user": <native id>, "consent": [client_id] | "all"}]}`, signed the same way) and the claim of
a third-party user's keys (`claim_keys`), signed over `GET <path>?user=<URI>&for=<native id>`.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol

import msgspec
import structlog

from gateway.clock import now_ms
from gateway.config import Config
from gateway.content import content_to_json
from gateway.errors import (
    GatewayError,
    InvalidSignature,
    NotFound,
    Unavailable,
    UnknownRecipient,
    ValidationFailed,
)
from gateway.platforms.base import (
    ConsentSetter,
    Inbound,
    InboundSink,
    OlmMessage,
    ThirdPartyKeys,
    provider_of,
)
from gateway.platforms.http import HttpPlatform
from gateway.store import Tx
from gateway.store import platform as platform_store
from gateway.translate import TRANSLATORS, TranslationError, platform_uri

log = structlog.get_logger(__name__)


class _Known:
    """The third-party URIs of the scoped ids one webhook mentions (a UserDirectory)."""

    def __init__(self, uris: dict[str, str], service: str) -> None:
        self.uris = uris
        self.service = service

    def uri_for(self, service: str, native_id: str) -> str | None:
        return self.uris.get(native_id) if service == self.service else None


def verify(secret: str, body: bytes, header: str | None) -> None:
    """Raise InvalidSignature unless `header` is `sha256=<hex HMAC of body>`."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not secret or header is None or not hmac.compare_digest(header.encode(), expected.encode()):
        raise InvalidSignature(
            "X-Hub-Signature-256 does not match the body.", field="X-Hub-Signature-256"
        )


def verify_subscription(config: Config, service: str, mode: str, token: str) -> None:
    """The GET handshake: hub.mode=subscribe and the configured hub.verify_token."""
    endpoint = config.http_platform.services.get(service)
    expected = "" if endpoint is None else endpoint.verify_token
    if mode != "subscribe" or not expected or not hmac.compare_digest(token, expected):
        raise InvalidSignature("Wrong hub.mode or hub.verify_token.", field="hub.verify_token")


def key_claim_message(service: str, user: str, for_user: str) -> bytes:
    """What a platform signs to claim a third-party user's keys (`X-Hub-Signature-256`)."""
    return f"GET /platform/v1/{service}/keys?user={user}&for={for_user}".encode()


class ConsentEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    user: str
    consent: list[str] | Literal["all"]
    time: int = 0


class ConsentWebhook(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    object: Literal["consent"]
    entry: list[ConsentEntry]


Allows = Callable[[str, str], Awaitable[bool]]
# How long a status for a message whose native id is not recorded (yet) is asked to be retried.
RECEIPT_GRACE_MS = 30_000
# How long a status of a message not yet recorded waits for that record before a 503.
OVERTAKE_WAIT_S = 0.5


class BatchSink(InboundSink, Protocol):
    """The relay's receiving side, taking a webhook's items together."""

    async def receive_many(self, items: list[Inbound]) -> list[str | GatewayError]:
        """Accept the items in one unit, in order: each one's gateway id or its refusal."""
        ...


class Ingress:
    """Turns one service webhook into relay items."""

    def __init__(
        self,
        config: Config,
        platform: HttpPlatform,
        inbound: BatchSink,
        *,
        set_consent: ConsentSetter | None = None,
        third_party_keys: ThirdPartyKeys | None = None,
        reach: Allows | None = None,
    ) -> None:
        self.config = config
        self.platform = platform
        self.inbound = inbound
        self.set_consent = set_consent
        self.third_party_keys = third_party_keys
        self.reach = reach

    def _secret(self, service: str) -> str:
        endpoint = self.config.http_platform.services.get(service)
        if service not in TRANSLATORS or endpoint is None:
            raise NotFound("This service takes no webhooks here.")
        return endpoint.app_secret

    async def claim_keys(
        self, service: str, user: str, for_user: str, signature: str | None
    ) -> dict[str, Any]:
        """A third-party user's key bundle for platform user `for_user` (its native id), who
        must have consented to the user's provider; with `id`, the user's native id here."""
        verify(self._secret(service), key_claim_message(service, user, for_user), signature)
        client_id = provider_of(user)
        if client_id is None:
            raise ValidationFailed("Expected a third-party user URI.", field="user")
        if not for_user:
            raise ValidationFailed("The `for` query parameter is required.", field="for")
        if self.third_party_keys is None or self.reach is None:
            raise NotFound("This gateway gives no third-party keys to platforms.")
        if not await self.reach(platform_uri(service, for_user), client_id):
            raise UnknownRecipient("No such user reachable by this platform user.", field="user")
        bundle = await self.third_party_keys(user)
        if bundle is None:
            raise UnknownRecipient("No such third-party user has published keys.", field="user")
        native_id = self.platform.native_id(service, user)

        async def remember(tx: Tx) -> None:
            await platform_store.remember_user(tx, service, native_id, user)

        await self.platform.store.write("platform_user_id", remember)
        return msgspec.to_builtins(bundle) | {"user": user, "id": native_id}

    async def receive(self, service: str, body: bytes, signature: str | None) -> list[str]:
        """Verify, translate and relay one webhook; return the gateway ids it produced."""
        verify(self._secret(service), body, signature)
        try:
            doc = msgspec.json.decode(body)
        except (msgspec.DecodeError, RecursionError):
            raise ValidationFailed("The webhook is not JSON.", field="$") from None
        if not isinstance(doc, dict):
            raise ValidationFailed("The webhook is not an object.", field="$")
        if doc.get("object") == "consent":
            await self._consent(service, doc)
            return []
        try:
            encrypted = _take_encrypted(service, doc)
        except (ValueError, TypeError, AttributeError, msgspec.ValidationError):
            raise ValidationFailed("Malformed encrypted message.", field="$.entry") from None
        # The encrypted events are out of `doc` now: their recipients are looked up too.
        extra = {e["recipient"] for e in encrypted}
        users = _Known(await self._known_ids(service, doc, extra), service)
        try:
            events = TRANSLATORS[service].webhook_to_neutral(doc, users=users)
        except TranslationError as exc:
            raise ValidationFailed(exc.reason, field=f"$.{exc.field}") from None
        items = [self._encrypted_item(service, users, e) for e in encrypted]
        for event in events:
            item = await self._item(service, event)
            if item is not None:
                items.append(item)
        # All of a webhook's items in one write unit, in order; an item refused (its recipient
        # unreachable) does not fail the others.
        taken = []
        for answer in await self.inbound.receive_many(items):
            if isinstance(answer, GatewayError):
                log.warning("platform_item_refused", service=service, problem=answer.type)
            else:
                taken.append(answer)
        return taken

    async def _consent(self, service: str, doc: dict[str, Any]) -> None:
        if self.set_consent is None:
            raise NotFound("This gateway takes no consent webhooks.")
        try:
            webhook = msgspec.convert(doc, ConsentWebhook)
        except msgspec.ValidationError as exc:
            raise ValidationFailed(f"Malformed consent webhook: {exc}", field="$.entry") from None
        for entry in webhook.entry:
            await self.set_consent(platform_uri(service, entry.user), entry.consent)

    async def _known_ids(
        self, service: str, doc: dict[str, Any], extra: set[str]
    ) -> dict[str, str]:
        ids = sorted((_mentioned_ids(doc) | extra) - {""})
        if not ids:
            return {}
        known = {}
        for native_id in ids[:100]:  # a webhook batches a few events, not thousands
            uri = await platform_store.user_uri(self.platform.store, service, native_id)
            if uri is not None:
                known[native_id] = uri
        return known

    def _encrypted_item(self, service: str, users: _Known, found: dict[str, Any]) -> Inbound:
        recipient = users.uri_for(service, found["recipient"]) or platform_uri(
            service, found["recipient"]
        )
        return Inbound(
            native_id=found["id"], kind="message", service=service,
            sender=platform_uri(service, found["sender"]), recipient=recipient,
            sent_at=found["sent_at"], payload={"encrypted": found["encrypted"]},
        )  # fmt: skip

    async def _item(self, service: str, event: Any) -> Inbound | None:
        env = event.envelope
        common = {
            "native_id": env.id, "kind": env.kind, "service": service, "sender": env.sender,
            "recipient": env.recipient, "sent_at": env.sent_at,
        }  # fmt: skip
        if env.kind == "message":
            if self.config.services[service].e2ee == "required" or event.content is None:
                log.warning("platform_plaintext_refused", service=service)
                return None
            return Inbound(payload={"content": content_to_json(event.content)}, **common)
        if env.kind == "typing":
            return Inbound(payload={"state": event.typing}, **common)
        receipt = event.receipt
        if receipt is None or receipt.status not in ("delivered", "read"):
            return None
        gateway_id = await self._gateway_id(service, receipt.message_id)
        waited = 0.0
        while gateway_id is None and waited < OVERTAKE_WAIT_S:
            # Most often the record is a moment from committing: wait for it here rather
            # than have the service retry the whole webhook later.
            started = time.monotonic()
            await self.platform.record_written(OVERTAKE_WAIT_S - waited)
            waited += time.monotonic() - started
            gateway_id = await self._gateway_id(service, receipt.message_id)
        if gateway_id is None:
            if now_ms() - env.sent_at < RECEIPT_GRACE_MS:
                # A status can overtake our record of the message's native id (the service
                # answered the send, its user's device acknowledged at once): Meta retries a
                # webhook that is not taken, so ask for the retry.
                raise Unavailable("A status for a message not yet recorded; retry.")
            return None
        common["native_id"] = f"{env.id}:{receipt.status}"
        return Inbound(payload={"message_id": gateway_id, "status": receipt.status}, **common)

    async def _gateway_id(self, service: str, native_id: str) -> str | None:
        # WhatsApp's translator strips the `wamid.` prefix the service answered with.
        alias = f"wamid.{native_id}"
        # A status can come back before the record of its message's native id commits: the id
        # is known here from the service's answer to the send, so the status need not wait.
        sent = self.platform.unrecorded_message_id(service, native_id, alias)
        if sent is not None:
            return sent
        return await platform_store.message_id(self.platform.store, service, native_id, alias)


def _mentioned_ids(doc: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    for entry in doc.get("entry") or []:
        if not isinstance(entry, dict):
            continue
        for change in entry.get("changes") or []:
            metadata = (change.get("value") or {}).get("metadata") or {}
            found.add(str(metadata.get("display_phone_number", "")))
        for event in entry.get("messaging") or []:
            if isinstance(event, dict):
                found.add(str((event.get("recipient") or {}).get("id", "")))
    return found - {""}


def _olm(value: Any) -> dict[str, Any]:
    """Check an Olm message's shape (DESIGN §4.5) before it is relayed to a provider."""
    return msgspec.to_builtins(msgspec.convert(value, OlmMessage))


def _take_encrypted(service: str, doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Remove the Olm messages from the webhook; return them with their addressing."""
    out: list[dict[str, Any]] = []
    for entry in doc.get("entry") or []:
        if not isinstance(entry, dict):
            continue
        for change in entry.get("changes") or []:
            value = change.get("value") if isinstance(change, dict) else None
            if not isinstance(value, dict) or not isinstance(value.get("messages"), list):
                continue
            recipient = str((value.get("metadata") or {}).get("display_phone_number", ""))
            keep = []
            for msg in value["messages"]:
                if isinstance(msg, dict) and msg.get("type") == "encrypted":
                    out.append({
                        "id": str(msg.get("id")), "sender": str(msg.get("from")),
                        "recipient": recipient, "encrypted": _olm(msg.get("encrypted")),
                        "sent_at": int(msg.get("timestamp", 0)) * 1000,
                    })  # fmt: skip
                else:
                    keep.append(msg)
            value["messages"] = keep
        if isinstance(entry.get("messaging"), list):
            keep = []
            for event in entry["messaging"]:
                message = event.get("message") if isinstance(event, dict) else None
                if isinstance(message, dict) and "encrypted" in message:
                    out.append({
                        "id": str(message.get("mid")),
                        "sender": str((event.get("sender") or {}).get("id")),
                        "recipient": str((event.get("recipient") or {}).get("id")),
                        "encrypted": _olm(message["encrypted"]),
                        "sent_at": int(event.get("timestamp", 0)),
                    })  # fmt: skip
                else:
                    keep.append(event)
            entry["messaging"] = keep
    return out
