"""Onboard a third-party provider through the real HTTP API, with real keys made here.

`await onboard(client)` returns an `OnboardedProvider` whose `access_token` works right away
(`provider.headers()` gives the Authorization header); the other helpers build each step
separately, for tests of what goes wrong at one of them. `register_provider(app, client_id)`
is the shortcut for tests that need a provider of a chosen client_id: written straight to
storage, with a real access token.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import ECAlgorithm, OKPAlgorithm

from gateway.http.app_keys import ACCESS_TOKENS, CONFIG, STORE
from gateway.service.scopes import SCOPES
from gateway.store import Tx
from tests.conftest import admin_headers

KeyKind = Literal["ed25519", "p256"]
PrivateKey = Ed25519PrivateKey | ec.EllipticCurvePrivateKey
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ALL_SERVICES = ("whatsapp", "messenger", "instagram")


def new_key(
    kind: KeyKind = "ed25519", kid: str | None = None
) -> tuple[PrivateKey, dict[str, Any]]:
    """A fresh private key and its public JWK (with a kid)."""
    private: PrivateKey
    if kind == "ed25519":
        private = Ed25519PrivateKey.generate()
        jwk = OKPAlgorithm.to_jwk(private.public_key(), as_dict=True)
    else:
        private = ec.generate_private_key(ec.SECP256R1())
        jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    return private, {**jwk, "kid": kid or f"{kind}-{uuid.uuid4().hex[:8]}"}


def alg_of(private: PrivateKey) -> str:
    return "EdDSA" if isinstance(private, Ed25519PrivateKey) else "ES256"


def token_url(client: Any) -> str:
    """The token endpoint URL assertions must name as `aud` (from the gateway's config)."""
    return f"{client.app[CONFIG].base_url}/v1/oauth/token"


def client_assertion(
    client: Any,
    client_id: str,
    private: PrivateKey,
    kid: str | None,
    *,
    lifetime_s: int = 60,
    headers: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    """An RFC 7523 client assertion; `claims` override or (with None) remove the defaults."""
    now = int(time.time())
    body: dict[str, Any] = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_url(client),
        "iat": now,
        "exp": now + lifetime_s,
        "jti": uuid.uuid4().hex,
    }
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    extra = {"kid": kid} if kid is not None else {}
    return jwt.encode(
        body, private, algorithm=alg_of(private), headers={**extra, **(headers or {})}
    )


async def submit_request(
    client: Any,
    keys: list[dict[str, Any]],
    *,
    organisation: str = "Example Messenger",
    services: tuple[str, ...] = ALL_SERVICES,
    functionalities: tuple[str, ...] = (),
    webhook_url: str | None = None,
) -> dict[str, Any]:
    """POST /v1/interop-requests; returns the 201 body."""
    body: dict[str, Any] = {
        "organisation": organisation,
        "contact_email": "interop@example.org",
        "services": list(services),
        "functionalities": list(functionalities),
        "jwks": {"keys": keys},
    }
    if webhook_url is not None:
        body["webhook_url"] = webhook_url
    response = await client.post("/v1/interop-requests", json=body)
    assert response.status == 201, await response.text()
    created: dict[str, Any] = await response.json()
    return created


async def decide(client: Any, request_id: str, decision: str = "approve", reason: str = "") -> Any:
    """POST the admin decision; returns the response."""
    return await client.post(
        f"/admin/v1/interop-requests/{request_id}/decision",
        json={"decision": decision, "reason": reason or None},
        headers=admin_headers(),
    )


async def request_status(client: Any, request_id: str, token: str) -> dict[str, Any]:
    response = await client.get(
        f"/v1/interop-requests/{request_id}", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status == 200, await response.text()
    status: dict[str, Any] = await response.json()
    return status


async def post_token(client: Any, assertion: str, **params: str) -> Any:
    """POST /v1/oauth/token with a client assertion; `params` add or override form fields."""
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
        **params,
    }
    return await client.post("/v1/oauth/token", data=form)


@dataclass
class OnboardedProvider:
    """A provider approved through the API, with its private key and a fresh access token."""

    client_id: str
    private_key: PrivateKey
    kid: str
    access_token: str
    scopes: list[str]
    request_id: str
    status_token: str
    webhook_secret: str | None = None
    jwk: dict[str, Any] = field(default_factory=dict)

    def headers(self) -> dict[str, str]:
        """The Authorization header carrying the access token."""
        return {"Authorization": f"Bearer {self.access_token}"}

    def assertion(self, client: Any, **claims: Any) -> str:
        """A new client assertion of this provider."""
        return client_assertion(client, self.client_id, self.private_key, self.kid, **claims)


async def onboard(
    client: Any,
    *,
    organisation: str = "Example Messenger",
    key: KeyKind = "ed25519",
    services: tuple[str, ...] = ALL_SERVICES,
    functionalities: tuple[str, ...] = (),
    webhook_url: str | None = None,
    scope: str | None = None,
) -> OnboardedProvider:
    """Request, approve, authenticate: a provider with a working access token, in one call."""
    private, jwk = new_key(key)
    created = await submit_request(
        client,
        [jwk],
        organisation=organisation,
        services=services,
        functionalities=functionalities,
        webhook_url=webhook_url,
    )
    response = await decide(client, created["id"])
    assert response.status == 200, await response.text()
    status = await request_status(client, created["id"], created["status_token"])
    client_id = status["client_id"]
    extra = {"scope": scope} if scope is not None else {}
    response = await post_token(
        client, client_assertion(client, client_id, private, jwk["kid"]), **extra
    )
    assert response.status == 200, await response.text()
    issued = await response.json()
    return OnboardedProvider(
        client_id=client_id,
        private_key=private,
        kid=jwk["kid"],
        access_token=issued["access_token"],
        scopes=issued["scope"].split(),
        request_id=created["id"],
        status_token=created["status_token"],
        webhook_secret=status["webhook_secret"],
        jwk=jwk,
    )


async def register_provider(
    app: Any,
    client_id: str,
    scopes: tuple[str, ...] | list[str] = SCOPES,
    *,
    services: tuple[str, ...] = ALL_SERVICES,
) -> str:
    """An active provider named `client_id` (created in storage if missing) and a real access
    token for it with `scopes`; no intake, no approval, no client assertion."""
    now = int(time.time() * 1000)
    request_id = f"test-request-{client_id}"

    async def unit(tx: Tx) -> None:
        await tx.execute(
            "INSERT INTO interop_requests (id, organisation, contact_email, services, "
            "functionalities, jwks, status, status_token_hash, received_at, deadline_at, "
            "decided_at, client_id) VALUES ($1, $2, 'test@example.org', $3, '[]', "
            "'{\"keys\": []}', 'approved', '-', $4, $4, $4, $2) ON CONFLICT DO NOTHING",
            request_id,
            client_id,
            json.dumps(list(services)),
            now,
        )
        await tx.execute(
            "INSERT INTO providers (client_id, request_id, organisation, jwks, state, services, "
            "functionalities, scopes, created_at, updated_at) VALUES ($1, $2, $1, "
            "'{\"keys\": []}', 'active', $3, '[]', $4, $5, $5) ON CONFLICT DO NOTHING",
            client_id,
            request_id,
            json.dumps(list(services)),
            json.dumps(list(SCOPES)),
            now,
        )

    await app[STORE].write("test_register_provider", unit)
    token, _ = app[ACCESS_TOKENS].issue(client_id, list(scopes))
    return token
