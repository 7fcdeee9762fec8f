"""Providers (approved third parties): their keys, grants, webhook and state."""

from __future__ import annotations

import json
from typing import Any, Literal

import msgspec

from gateway.store.base import Reader, Row, Tx

ProviderState = Literal["active", "suspended"]

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


class ProviderRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A provider with its registered public keys, for client authentication."""

    provider: Provider
    jwks: list[dict[str, Any]]


class WebhookTarget(msgspec.Struct, frozen=True, kw_only=True):
    """Where and with which HMAC secret to push a provider's events (DESIGN §4.6)."""

    url: str
    secret: str


def _provider(row: Row) -> Provider:
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


async def add_provider(
    tx: Tx,
    *,
    client_id: str,
    request_id: str,
    organisation: str,
    jwks: list[dict[str, Any]],
    webhook_url: str | None,
    webhook_secret: str | None,
    services: list[str],
    functionalities: list[str],
    scopes: list[str],
    at: int,
) -> None:
    """Record a newly approved provider, active."""
    await tx.execute(
        "INSERT INTO providers (client_id, request_id, organisation, jwks, webhook_url, "
        "webhook_secret, state, services, functionalities, scopes, created_at, updated_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, 'active', $7, $8, $9, $10, $10)",
        client_id,
        request_id,
        organisation,
        json.dumps({"keys": jwks}),
        webhook_url,
        webhook_secret,
        json.dumps(services),
        json.dumps(functionalities),
        json.dumps(scopes),
        at,
    )


async def provider_record(db: Reader, client_id: str) -> ProviderRecord | None:
    """The provider and its JWKS; None when unknown."""
    row = await db.fetchrow(f"SELECT {_COLUMNS} FROM providers WHERE client_id = $1", client_id)
    if row is None:
        return None
    return ProviderRecord(provider=_provider(row), jwks=json.loads(row["jwks"])["keys"])


async def list_providers(db: Reader, state: ProviderState | None = None) -> list[Provider]:
    """All providers (optionally in one state), oldest first."""
    if state is None:
        rows = await db.fetch(f"SELECT {_COLUMNS} FROM providers ORDER BY created_at, client_id")
    else:
        rows = await db.fetch(
            f"SELECT {_COLUMNS} FROM providers WHERE state = $1 ORDER BY created_at, client_id",
            state,
        )
    return [_provider(row) for row in rows]


async def provider_state(db: Reader, client_id: str) -> ProviderState | None:
    """The provider's state; None when unknown."""
    state: ProviderState | None = await db.fetchval(
        "SELECT state FROM providers WHERE client_id = $1", client_id
    )
    return state


async def set_provider_state(tx: Tx, client_id: str, state: ProviderState, *, at: int) -> None:
    """Move the provider to `state`."""
    await tx.execute(
        "UPDATE providers SET state = $1, updated_at = $2 WHERE client_id = $3",
        state,
        at,
        client_id,
    )


async def provider_scopes(db: Reader, client_id: str) -> list[str] | None:
    """The scopes granted to the provider; None when unknown."""
    scopes = await db.fetchval("SELECT scopes FROM providers WHERE client_id = $1", client_id)
    return None if scopes is None else list(json.loads(scopes))


async def webhook_target(db: Reader, client_id: str) -> WebhookTarget | None:
    """The provider's webhook URL and secret; None when unknown or it has no webhook."""
    row = await db.fetchrow(
        "SELECT webhook_url, webhook_secret FROM providers WHERE client_id = $1", client_id
    )
    if row is None or not row["webhook_url"] or not row["webhook_secret"]:
        return None
    return WebhookTarget(url=row["webhook_url"], secret=row["webhook_secret"])


async def has_webhook(db: Reader, client_id: str) -> bool | None:
    """Whether the provider registered a webhook URL; None when unknown."""
    row = await db.fetchrow("SELECT webhook_url FROM providers WHERE client_id = $1", client_id)
    return None if row is None else row["webhook_url"] is not None


async def replace_webhook_secret(tx: Tx, client_id: str, secret: str, *, at: int) -> None:
    """Store a new webhook secret, counted as shown (it is returned to the caller at once)."""
    await tx.execute(
        "UPDATE providers SET webhook_secret = $1, webhook_secret_shown_at = $2, "
        "updated_at = $2 WHERE client_id = $3",
        secret,
        at,
        client_id,
    )


async def take_unshown_webhook_secret(tx: Tx, client_id: str, *, at: int) -> str | None:
    """The webhook secret if it was never shown, marking it shown; None otherwise."""
    changed = await tx.execute(
        "UPDATE providers SET webhook_secret_shown_at = $1 "
        "WHERE client_id = $2 AND webhook_secret IS NOT NULL "
        "AND webhook_secret_shown_at IS NULL",
        at,
        client_id,
    )
    if not changed:
        return None
    secret: str | None = await tx.fetchval(
        "SELECT webhook_secret FROM providers WHERE client_id = $1", client_id
    )
    return secret
