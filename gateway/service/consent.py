"""Per-user, per-provider consent (Art. 7(7)): without it a user is invisible to the provider.

A platform user consents to a list of providers or to all (`client_id` '*'). `allows` is asked
on every send, lookup and key claim, so answers are cached for a few seconds; local changes
drop the cache at once, other replicas see them within `ttl_s`.
"""

from __future__ import annotations

import time
from typing import Literal

from gateway.clock import now_ms
from gateway.service.event_types import ConsentEvent
from gateway.service.events import EventQueue
from gateway.store import Store, Tx
from gateway.store import consent as consents
from gateway.store.consent import ALL

Consent = list[str] | Literal["all"]


class ConsentRegistry:
    """Reads and changes consents; revocations and grants reach the provider as events."""

    def __init__(self, store: Store, events: EventQueue, *, ttl_s: float = 5.0) -> None:
        self.store = store
        self.events = events
        self.ttl_s = ttl_s
        self._cache: dict[tuple[str, str], tuple[float, bool]] = {}

    async def allows(self, user_uri: str, client_id: str) -> bool:
        """Whether `user_uri` consented to be reachable by provider `client_id`."""
        key = (user_uri, client_id)
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        allowed = await consents.consent_allows(self.store, user_uri, client_id)
        if len(self._cache) > 100_000:  # bounded: a cache, not a copy of the table
            self._cache.clear()
        self._cache[key] = (now + self.ttl_s, allowed)
        return allowed

    async def allows_in(self, tx: Tx, user_uri: str, client_id: str) -> bool:
        """`allows` inside a write unit, uncached (the decision commits with its effect)."""
        return await consents.consent_allows(tx, user_uri, client_id)

    async def set(self, user_uri: str, consent: Consent) -> None:
        """Replace `user_uri`'s consents; each provider that lost or gained it gets an event."""
        wanted = {ALL} if consent == "all" else set(consent)

        async def unit(tx: Tx) -> None:
            had = await consents.consented_providers(tx, user_uri)
            at = now_ms()
            for client_id in had - wanted:
                await consents.revoke_consent(tx, user_uri, client_id)
            for client_id in wanted - had:
                await consents.grant_consent(tx, user_uri, client_id, at=at)
            # '*' names no provider: nobody can be told of it, and nobody needs to be.
            for client_id in sorted((had - wanted) - {ALL}):
                event = ConsentEvent(user=user_uri, state="revoked", at=at)
                await self.events.append_in(tx, client_id, event)
            for client_id in sorted((wanted - had) - {ALL}):
                event = ConsentEvent(user=user_uri, state="granted", at=at)
                await self.events.append_in(tx, client_id, event)
            tx.on_commit(self._forget(user_uri))

        await self.store.write("consent_set", unit)

    def _forget(self, user_uri: str):  # type: ignore[no-untyped-def]
        def forget() -> None:
            for key in [k for k in self._cache if k[0] == user_uri]:
                del self._cache[key]

        return forget
