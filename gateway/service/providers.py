"""Registered third-party providers: their keys, grants and state (active / suspended)."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from typing import Any, Literal

import msgspec

from gateway.errors import Conflict
from gateway.service.tenancy import not_found
from gateway.store import Store, Tx

ProviderState = Literal["active", "suspended"]
# The topic of Store notifications that a provider's state changed (payload: its client id).
TOPIC = "providers"

_COLUMNS = (
    "client_id, request_id, organisation, jwks, webhook_url, state, services, "
    "functionalities, scopes, created_at, updated_at"
)


class Provider(msgspec.Struct, frozen=True, kw_only=True):
    """A provider as the admin API and `GET /v1/me` show it (never its secrets)."""

    client_id: str
    request_id: str
    organisation: str
    state: ProviderState
    services: list[str]
    functionalities: list[str]
    scopes: list[str]
    webhook_url: str | None
    created_at: int
    updated_at: int


class WebhookTarget(msgspec.Struct, frozen=True, kw_only=True):
    """Where and with which HMAC secret to push a provider's events (DESIGN §4.6)."""

    url: str
    secret: str


class ProviderRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A provider with its registered public keys, for client authentication."""

    provider: Provider
    jwks: list[dict[str, Any]]


def _provider(row: Any) -> Provider:
    return Provider(
        client_id=row["client_id"],
        request_id=row["request_id"],
        organisation=row["organisation"],
        state=row["state"],
        services=json.loads(row["services"]),
        functionalities=json.loads(row["functionalities"]),
        scopes=json.loads(row["scopes"]),
        webhook_url=row["webhook_url"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def new_webhook_secret() -> str:
    """A fresh secret for the X-Interop-Signature HMAC of webhooks (256 bits)."""
    return "whsec_" + secrets.token_urlsafe(32)


async def record_transition(
    tx: Tx,
    *,
    kind: Literal["request", "provider"],
    subject: str,
    before: str | None,
    after: str,
    actor: str,
    reason: str | None,
    at: int,
) -> None:
    """Keep who moved `subject` from `before` to `after`, when and why."""
    await tx.execute(
        "INSERT INTO onboarding_transitions "
        "(subject_kind, subject_id, from_state, to_state, actor, reason, at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7)",
        kind,
        subject,
        before,
        after,
        actor,
        reason,
        at,
    )


class ProviderRegistry:
    """Providers in storage, with a short-lived cache of their state for the auth hot path."""

    def __init__(
        self, store: Store, *, state_ttl_s: float, clock: Callable[[], float] = time.time
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
        row = await self._store.fetchrow(
            f"SELECT {_COLUMNS} FROM providers WHERE client_id = $1", client_id
        )
        if row is None:
            return None
        return ProviderRecord(provider=_provider(row), jwks=json.loads(row["jwks"])["keys"])

    async def webhook(self, client_id: str) -> WebhookTarget | None:
        """The provider's webhook URL and secret, or None when it pulls or streams instead."""
        row = await self._store.fetchrow(
            "SELECT webhook_url, webhook_secret FROM providers WHERE client_id = $1", client_id
        )
        if row is None or not row["webhook_url"] or not row["webhook_secret"]:
            return None
        return WebhookTarget(url=row["webhook_url"], secret=row["webhook_secret"])

    async def view(self, client_id: str) -> Provider:
        """The provider as shown to itself or an admin; not-found when unknown."""
        record = await self.get(client_id)
        if record is None:
            raise not_found("provider")
        return record.provider

    async def list(self, state: ProviderState | None = None) -> list[Provider]:
        """All providers (optionally in one state), oldest first."""
        if state is None:
            rows = await self._store.fetch(
                f"SELECT {_COLUMNS} FROM providers ORDER BY created_at, client_id"
            )
        else:
            rows = await self._store.fetch(
                f"SELECT {_COLUMNS} FROM providers WHERE state = $1 "
                "ORDER BY created_at, client_id",
                state,
            )
        return [_provider(row) for row in rows]

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
        state = await self._store.fetchval(
            "SELECT state FROM providers WHERE client_id = $1", client_id
        )
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
        now = int(self._clock() * 1000)

        async def unit(tx: Tx) -> None:
            before = await tx.fetchval(
                "SELECT state FROM providers WHERE client_id = $1", client_id
            )
            if before is None:
                raise not_found("provider")
            if before == state:
                return  # idempotent: asking twice changes nothing and records nothing
            await tx.execute(
                "UPDATE providers SET state = $1, updated_at = $2 WHERE client_id = $3",
                state,
                now,
                client_id,
            )
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
        now = int(self._clock() * 1000)

        async def unit(tx: Tx) -> None:
            url = await tx.fetchrow(
                "SELECT webhook_url FROM providers WHERE client_id = $1", client_id
            )
            if url is None:
                raise not_found("provider")
            if url["webhook_url"] is None:
                raise Conflict("This provider has no webhook URL, so it has no webhook secret.")
            await tx.execute(
                "UPDATE providers SET webhook_secret = $1, webhook_secret_shown_at = $2, "
                "updated_at = $2 WHERE client_id = $3",
                secret,
                now,
                client_id,
            )

        await self._store.write("provider_rotate_webhook_secret", unit)
        return secret
