"""The key directory (DESIGN §4.4): publish third-party users' Olm keys, claim one-time keys.

The directory holds public keys only; it checks each key's signature on upload and hands each
one-time key out exactly once. Platform users' bundles come from their platform connector.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

import msgspec
import structlog
import vodozemac

from gateway.clock import now_ms
from gateway.crypto import KeyBundle, verify_key_signature
from gateway.errors import UnknownRecipient, ValidationFailed
from gateway.platforms.base import ClaimedBundle, SignedOneTimeKey
from gateway.service.event_types import Event, IdentityChangedEvent, KeysLowEvent
from gateway.store import Reader, Store, Tx
from gateway.store import keys as key_store
from gateway.store.keys import SignedKey
from gateway.uris import parse_user_uri, user_uri

log = structlog.get_logger(__name__)

KEY_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=_-")
KEY_ID_MAX = 64


# The answer of `GET /v1/keys`: the same type the platform connectors answer with.
ClaimedKeys = ClaimedBundle


class PublishResult(msgspec.Struct, frozen=True, kw_only=True):
    """The answer of `PUT /v1/users/{user}/keys`: what the directory now holds for the user."""

    user: str
    one_time_key_count: int
    fallback_key: bool
    identity_changed: bool


class EventSink(Protocol):
    """The relay's per-provider event queue, as the key directory uses it."""

    async def append_in(self, tx: Tx, client_id: str, event: Event) -> None: ...


class KeyAudit(Protocol):
    """Appends audit records inside the effect's write unit: the request's own record when
    `action` is None, else an internal event (e.g. `keys.identity_changed`) of that request."""

    async def __call__(self, tx: Tx, action: str | None, subjects: Iterable[str]) -> None: ...


class AuditEvents(Protocol):
    """The audit log's internal events, for effects outside any provider request."""

    async def event_in(self, tx: Tx, *, action: str, subjects: Iterable[str] = ()) -> Any: ...


class KeyLog(Protocol):
    """The key transparency log (gateway.service.transparency): a leaf for each key change."""

    async def record_in(
        self, tx: Tx, user_uri: str, identity_key: str, signing_key: str
    ) -> None: ...


PlatformKeys = Callable[[str], Awaitable[ClaimedBundle | None]]  # Platform.claim_key_bundle
# May provider `client_id` reach `user_uri`? The reach policy (gateway.service.reach: approved
# service and consent for platform users, own users for third-party ones): allows(uri, client).
ConsentCheck = Callable[[str, str], Awaitable[bool]]


def _cap_exceeded(max_keys: int, stored: int) -> ValidationFailed:
    return ValidationFailed(
        f"A user holds at most {max_keys} one-time keys; {stored} are stored.",
        field="$.one_time_keys",
    )


def _curve_key_ok(key: str) -> bool:
    try:
        vodozemac.Curve25519PublicKey.from_base64(key)
    except (vodozemac.KeyException, ValueError, TypeError):
        return False
    return True


def check_bundle(bundle: KeyBundle, *, max_keys: int) -> None:
    """Refuse malformed keys and bad signatures, naming the first field at fault."""
    check_bundle_size(bundle, max_keys=max_keys)
    check_signatures(bundle)


def check_bundle_size(bundle: KeyBundle, *, max_keys: int) -> None:
    """The cheap checks: the two long-term keys, and no more one-time keys than allowed."""
    if not _curve_key_ok(bundle.identity_key):
        raise ValidationFailed("Not a Curve25519 public key.", field="$.identity_key")
    try:
        vodozemac.Ed25519PublicKey.from_base64(bundle.signing_key)
    except (vodozemac.KeyException, ValueError, TypeError):
        raise ValidationFailed("Not an Ed25519 public key.", field="$.signing_key") from None
    if len(bundle.one_time_keys) > max_keys:
        raise ValidationFailed(
            f"At most {max_keys} one-time keys per upload.", field="$.one_time_keys"
        )


def check_signatures(bundle: KeyBundle) -> None:
    """Every key id well formed, every key a Curve25519 key signed by the signing key."""
    signed = [
        (f"$.one_time_keys.{kid}", kid, k.key, k.signature)
        for kid, k in bundle.one_time_keys.items()
    ]
    if bundle.fallback_key is not None:
        fb = bundle.fallback_key
        signed.append(("$.fallback_key", fb.key_id, fb.key, fb.signature))
    for path, key_id, key, signature in signed:
        if not key_id or len(key_id) > KEY_ID_MAX or not set(key_id) <= KEY_ID_CHARS:
            # Never echo a malformed id back into a field path.
            where = "$.fallback_key.key_id" if path == "$.fallback_key" else "$.one_time_keys"
            raise ValidationFailed("A key id must be 1-64 base64 characters.", field=where)
        if not _curve_key_ok(key):
            raise ValidationFailed("Not a Curve25519 public key.", field=f"{path}.key")
        if not verify_key_signature(bundle.signing_key, key, signature):
            raise ValidationFailed(
                "The signature does not verify under the uploaded signing key.",
                field=f"{path}.signature",
            )


class KeyDirectory:
    """Third-party users' keys from our tables, platform users' from their connector."""

    def __init__(
        self,
        store: Store,
        *,
        low_threshold: int,
        max_one_time_keys: int,
        platform_keys: PlatformKeys,
        consent: ConsentCheck,
        events: EventSink,
        audit_events: AuditEvents,
        transparency: KeyLog,
    ) -> None:
        self.store = store
        self.transparency = transparency
        self.low_threshold = low_threshold
        self.max_one_time_keys = max_one_time_keys
        self.platform_keys = platform_keys
        self.consent = consent
        self.events = events
        self.audit_events = audit_events

    async def publish(
        self, client_id: str, local: str, bundle: KeyBundle, *, audit: KeyAudit | None = None
    ) -> PublishResult:
        """Store a user's keys, all or nothing; a new identity key drops the old keys."""
        check_bundle_size(bundle, max_keys=self.max_one_time_keys)
        uri = user_uri(client_id, local)
        # The per-user cap first: a refused upload costs no signature checks (each ~0.1 ms).
        await self._check_cap(self.store, uri, bundle)
        check_signatures(bundle)
        now = now_ms()
        otks = [SignedKey(kid, k.key, k.signature) for kid, k in bundle.one_time_keys.items()]

        async def unit(tx: Tx) -> PublishResult:
            old = await key_store.identity(tx, uri)
            changed = old is not None and (
                old.identity_key != bundle.identity_key or old.signing_key != bundle.signing_key
            )
            await key_store.put_identity(
                tx, uri, client_id, bundle.identity_key, bundle.signing_key, at=now
            )
            await self.transparency.record_in(tx, uri, bundle.identity_key, bundle.signing_key)
            if changed:
                # Keys of the old account can no longer start sessions that decrypt.
                await key_store.drop_keys(tx, uri)
                await self._identity_changed_in(tx, uri, bundle, owner=client_id)
                if audit is not None:
                    await audit(tx, "keys.identity_changed", [uri])
            if audit is not None:
                await audit(tx, None, [uri])
            # Again inside the unit: a concurrent upload may have added keys since.
            await self._check_cap(tx, uri, bundle)
            await key_store.add_one_time_keys(tx, uri, otks, at=now)
            fb = bundle.fallback_key
            if fb is not None:
                await key_store.put_fallback_key(
                    tx, uri, SignedKey(fb.key_id, fb.key, fb.signature), at=now
                )
            return PublishResult(
                user=uri,
                one_time_key_count=await key_store.one_time_key_count(tx, uri),
                fallback_key=await key_store.fallback_key(tx, uri) is not None,
                identity_changed=changed,
            )

        result = await self.store.write("keys_publish", unit)
        log.info(
            "keys_published",
            one_time_keys=len(otks),
            stored=result.one_time_key_count,
            identity_changed=result.identity_changed,
        )
        return result

    async def _check_cap(self, db: Reader, uri: str, bundle: KeyBundle) -> None:
        """Refuse an upload that would take `uri` past the per-user one-time key cap."""
        old = await key_store.identity(db, uri)
        same = old is not None and (old.identity_key, old.signing_key) == (
            bundle.identity_key,
            bundle.signing_key,
        )
        # A new identity drops the stored keys, so only the upload counts.
        stored = await key_store.one_time_key_count(db, uri) if same else 0
        if stored + len(bundle.one_time_keys) > self.max_one_time_keys:
            raise _cap_exceeded(self.max_one_time_keys, stored)

    async def _identity_changed_in(
        self, tx: Tx, uri: str, bundle: KeyBundle, *, owner: str | None
    ) -> None:
        contacts = await key_store.contacts(tx, uri)
        event = IdentityChangedEvent(
            user=uri, identity_key=bundle.identity_key, signing_key=bundle.signing_key
        )
        for client_id in contacts:
            # Only providers that may still reach the user hear of it (contacts recorded
            # before the reach policy, or whose reach has ended, learn nothing).
            if client_id == owner or not await self._may_reach(uri, client_id):
                continue
            await self.events.append_in(tx, client_id, event)

    async def _may_reach(self, uri: str, client_id: str) -> bool:
        return await self.consent(uri, client_id)

    async def claim(
        self, client_id: str, target: str, *, audit: KeyAudit | None = None
    ) -> ClaimedKeys:
        """One bundle of `target` for provider `client_id`, claiming one one-time key."""
        uri = parse_user_uri(target)
        if uri is None:
            raise ValidationFailed("Not a user URI (mimi://<service>/u/<id>).", field="user")
        if uri.is_platform:
            return await self._claim_platform(client_id, str(uri), audit)
        # Another provider's user answers exactly like one who does not exist.
        claimed = None
        if await self._may_reach(str(uri), client_id):
            claimed = await self._claim_stored(str(uri), client_id, audit)
        if claimed is None:
            raise UnknownRecipient()
        return claimed

    async def claim_for_platform(self, target: str) -> ClaimedKeys | None:
        """A third-party user's bundle for a platform user (the sandbox encrypting to it)."""
        uri = parse_user_uri(target)
        if uri is None or uri.is_platform:
            return None
        return await self._claim_stored(str(uri), None, None)

    async def _claim_platform(
        self, client_id: str, uri: str, audit: KeyAudit | None
    ) -> ClaimedKeys:
        # Consent first, so a user who did not consent is never asked for keys at all.
        if not await self.consent(uri, client_id):
            raise UnknownRecipient()
        claimed = await self.platform_keys(uri)
        if claimed is None:
            raise UnknownRecipient()

        async def unit(tx: Tx) -> None:
            # The directory sees the platform user's keys: logged when new or changed.
            await self.transparency.record_in(tx, uri, claimed.identity_key, claimed.signing_key)
            await self.record_contact_in(tx, uri, client_id)
            if audit is not None:
                await audit(tx, None, [uri])

        await self.store.write("keys_claim_platform", unit)
        return claimed

    async def _claim_stored(
        self, uri: str, client_id: str | None, audit: KeyAudit | None
    ) -> ClaimedKeys | None:
        async def unit(tx: Tx) -> ClaimedKeys | None:
            ident = await key_store.identity(tx, uri)
            if ident is None:
                return None
            # Keys published before the log existed get their leaf at the first claim.
            await self.transparency.record_in(tx, uri, ident.identity_key, ident.signing_key)
            one_time = await key_store.claim_one_time_key(tx, uri)
            left = await key_store.one_time_key_count(tx, uri)
            fallback = None if one_time is not None else await key_store.fallback_key(tx, uri)
            # Tell the owner once when the stock falls below the threshold, and when it is out.
            low = left in (self.low_threshold - 1, 0)
            if one_time is not None and low:
                low_event = KeysLowEvent(user=uri, one_time_key_count=left)
                await self.events.append_in(tx, ident.client_id, low_event)
            if client_id is not None:
                await self.record_contact_in(tx, uri, client_id)
            else:
                # The platform side claimed (a platform user starts a session to this user).
                await self.audit_events.event_in(tx, action="keys.claimed", subjects=[uri])
            if audit is not None:
                await audit(tx, None, [uri])
            return ClaimedKeys(
                user=uri,
                identity_key=ident.identity_key,
                signing_key=ident.signing_key,
                one_time_key=_signed(one_time),
                fallback_key=_signed(fallback),
            )

        return await self.store.write("keys_claim", unit)

    async def record_contact_in(self, tx: Tx, uri: str, client_id: str) -> None:
        """Remember that `client_id` talks to `uri` (told when its identity key changes)."""
        await key_store.record_contact(tx, uri, client_id, at=now_ms())

    async def one_time_key_count(self, uri: str) -> int:
        """How many unclaimed one-time keys `uri` has."""
        return await key_store.one_time_key_count(self.store, uri)


def _signed(key: SignedKey | None) -> SignedOneTimeKey | None:
    if key is None:
        return None
    return SignedOneTimeKey(key_id=key.key_id, key=key.key, signature=key.signature)
