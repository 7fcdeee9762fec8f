"""Registered third-party providers: their keys, grants and state (active / suspended)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from gateway.clock import now_ms
from gateway.errors import Conflict
from gateway.service.tenancy import not_found
from gateway.store import Store, Tx
from gateway.store import providers as stored
from gateway.store.providers import Provider, ProviderRecord, ProviderState, WebhookTarget
from gateway.store.transitions import record_transition

__all__ = [
    "TOPIC",
    "Provider",
    "ProviderRecord",
    "ProviderRegistry",
    "ProviderState",
    "WebhookTarget",
    "new_webhook_secret",
]

# The topic of Store notifications that a provider's state changed (payload: its client id).
TOPIC = "providers"


def new_webhook_secret() -> str:
    """A fresh secret for the X-Interop-Signature HMAC of webhooks (256 bits)."""
    return "whsec_" + secrets.token_urlsafe(32)


class ProviderRegistry:
    """Providers in storage, with a short-lived cache of their state for the auth hot path."""

    def __init__(
        self, store: Store, *, state_ttl_s: float, clock: Callable[[], int] = now_ms
    ) -> None:
        self._store = store
        self._ttl = state_ttl_s
        self._clock = clock
        # client_id -> (state or None when unknown, monotonic time it was read)
        self._states: dict[str, tuple[ProviderState | None, float]] = {}
        # Called with the client id (None: maybe anyone) after a state change here or elsewhere.
        self.listeners: list[Callable[[str | None], None]] = []

    async def get(self, client_id: str) -> ProviderRecord | None:
        """The provider and its JWKS, straight from storage."""
        return await stored.provider_record(self._store, client_id)

    async def webhook(self, client_id: str) -> WebhookTarget | None:
        """The provider's webhook URL and secret, or None when it pulls or streams instead."""
        return await stored.webhook_target(self._store, client_id)

    async def view(self, client_id: str) -> Provider:
        """The provider as shown to itself or an admin; not-found when unknown."""
        record = await self.get(client_id)
        if record is None:
            raise not_found("provider")
        return record.provider

    async def list(self, state: ProviderState | None = None) -> list[Provider]:
        """All providers (optionally in one state), oldest first."""
        return await stored.list_providers(self._store, state)

    async def state(self, client_id: str) -> ProviderState | None:
        """The provider's state, from a cache at most `state_ttl_s` old (None: no such provider).

        A suspension drops the entry here at once and, through the store's `providers`
        notification (`heard`), on the other replicas a moment later; the TTL bounds it when a
        notification is lost.
        """
        now = time.monotonic()
        cached = self._states.get(client_id)
        if cached is not None and now - cached[1] < self._ttl:
            return cached[0]
        state = await stored.provider_state(self._store, client_id)
        if len(self._states) > 10_000:
            self._states.clear()
        self._states[client_id] = (state, now)
        return state

    def forget(self, client_id: str) -> None:
        """Drop the cached state so the next request reads storage."""
        self._states.pop(client_id, None)

    def heard(self, client_id: str | None) -> None:
        """Another replica changed `client_id`'s state (None: maybe anyone's): re-read it."""
        if client_id is None:
            self._states.clear()
        else:
            self.forget(client_id)
        self._tell(client_id)

    def _tell(self, client_id: str | None) -> None:
        for listener in self.listeners:
            listener(client_id)

    async def suspend(self, client_id: str, *, actor: str, reason: str | None) -> Provider:
        """Suspend the provider: every request of it fails from now on (Art. 7(9))."""
        return await self._set_state(client_id, "suspended", actor=actor, reason=reason)

    async def resume(self, client_id: str, *, actor: str, reason: str | None) -> Provider:
        """Let a suspended provider in again."""
        return await self._set_state(client_id, "active", actor=actor, reason=reason)

    async def _set_state(
        self, client_id: str, state: ProviderState, *, actor: str, reason: str | None
    ) -> Provider:
        now = self._clock()

        async def unit(tx: Tx) -> None:
            before = await stored.provider_state(tx, client_id)
            if before is None:
                raise not_found("provider")
            if before == state:
                return  # idempotent: asking twice changes nothing and records nothing
            await stored.set_provider_state(tx, client_id, state, at=now)
            await record_transition(
                tx,
                kind="provider",
                subject=client_id,
                before=before,
                after=state,
                actor=actor,
                reason=reason,
                at=now,
            )
            tx.on_commit(lambda: self.heard(client_id))
            tx.notify(TOPIC, client_id)

        await self._store.write(f"provider_{state}", unit)
        self.forget(client_id)
        return await self.view(client_id)

    async def rotate_webhook_secret(self, client_id: str) -> str:
        """Replace the provider's webhook secret and return the new one (shown this once)."""
        secret = new_webhook_secret()
        now = self._clock()

        async def unit(tx: Tx) -> None:
            hooked = await stored.has_webhook(tx, client_id)
            if hooked is None:
                raise not_found("provider")
            if not hooked:
                raise Conflict("This provider has no webhook URL, so it has no webhook secret.")
            await stored.replace_webhook_secret(tx, client_id, secret, at=now)

        await self._store.write("provider_rotate_webhook_secret", unit)
        return secret
