"""POST /v1/oauth/token: private_key_jwt client credentials, and every way to get it wrong."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.config import Config
from gateway.http.app_keys import STORE, TOKEN_ENDPOINT
from tests.conftest import admin_headers
from tests.onboarding_helpers import (
    ASSERTION_TYPE,
    OnboardedProvider,
    client_assertion,
    new_key,
    onboard,
    post_token,
    token_url,
)


@pytest.fixture
def config(backend_config: Config) -> Config:
    """Every test here runs on each storage backend."""
    return backend_config


async def oauth_error(response: Any, status: int, error: str) -> dict[str, Any]:
    """An RFC 6749 §5.2 error: JSON {error, error_description}, never problem+json."""
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    body: dict[str, Any] = await response.json()
    assert body["error"] == error
    assert body["error_description"]
    if status == 401:
        assert 'error="invalid_client"' in response.headers["WWW-Authenticate"]
    return body


@pytest.fixture
async def provider(client: Any) -> OnboardedProvider:
    return await onboard(client, key="p256")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def test_both_key_types_get_tokens(client: Any) -> None:
    for kind in ("ed25519", "p256"):
        provider = await onboard(client, key=kind)  # type: ignore[arg-type]
        assert provider.access_token.count(".") == 2
        assert provider.scopes == ["messages", "events", "keys", "lookup", "media"]


async def test_a_scope_subset_is_granted_and_anything_else_refused(
    client: Any, provider: OnboardedProvider
) -> None:
    response = await post_token(client, provider.assertion(client), scope="media messages")
    assert response.status == 200
    assert (await response.json())["scope"] == "messages media"
    for scope in ("messages admin", "", "everything"):
        response = await post_token(client, provider.assertion(client), scope=scope)
        await oauth_error(response, 400, "invalid_scope")


async def test_limited_functionalities_limit_the_scopes_a_token_may_hold(client: Any) -> None:
    provider = await onboard(client, functionalities=("text",))
    assert "media" not in provider.scopes
    response = await post_token(client, provider.assertion(client), scope="media")
    await oauth_error(response, 400, "invalid_scope")


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({"grant_type": None}, 400, "invalid_request"),
        ({"grant_type": "authorization_code"}, 400, "unsupported_grant_type"),
        (
            {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer"},
            400,
            "unsupported_grant_type",
        ),
        ({"client_assertion_type": None}, 401, "invalid_client"),
        ({"client_assertion_type": "urn:something:else"}, 401, "invalid_client"),
        ({"client_assertion": None}, 401, "invalid_client"),
        ({"client_assertion": "not.a.jwt"}, 401, "invalid_client"),
        ({"client_id": "someone-else"}, 401, "invalid_client"),
    ],
)
async def test_bad_requests(
    client: Any, provider: OnboardedProvider, form: dict[str, Any], status: int, error: str
) -> None:
    fields = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": provider.assertion(client),
        **form,
    }
    data = {k: v for k, v in fields.items() if v is not None}
    await oauth_error(await client.post("/v1/oauth/token", data=data), status, error)


async def test_not_a_form_and_repeated_parameters_are_invalid_requests(
    client: Any, provider: OnboardedProvider
) -> None:
    response = await client.post("/v1/oauth/token", json={"grant_type": "client_credentials"})
    await oauth_error(response, 400, "invalid_request")
    body = (
        f"grant_type=client_credentials&grant_type=client_credentials"
        f"&client_assertion_type={ASSERTION_TYPE}&client_assertion={provider.assertion(client)}"
    )
    response = await client.post(
        "/v1/oauth/token",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    body_json = await oauth_error(response, 400, "invalid_request")
    assert "repeated" in body_json["error_description"]


def unsigned(claims: dict[str, Any], header: dict[str, Any]) -> str:
    head = b64(json.dumps(header).encode())
    return f"{head}.{b64(json.dumps(claims).encode())}."


def claims_of(client: Any, provider: OnboardedProvider, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": provider.client_id,
        "sub": provider.client_id,
        "aud": token_url(client),
        "iat": now,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
    }
    claims.update(overrides)
    return claims


async def test_alg_none_is_refused(client: Any, provider: OnboardedProvider) -> None:
    assertion = unsigned(claims_of(client, provider), {"alg": "none", "kid": provider.kid})
    body = await oauth_error(await post_token(client, assertion), 401, "invalid_client")
    assert "none" in body["error_description"]


async def test_hs256_signed_with_the_public_key_is_refused(
    client: Any, provider: OnboardedProvider
) -> None:
    # The classic confusion attack: the public key used as an HMAC secret.
    public_pem = provider.private_key.public_key().public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
    )
    claims = claims_of(client, provider)
    signing_input = (
        b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": provider.kid}).encode())
        + "."
        + b64(json.dumps(claims).encode())
    )
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    assertion = f"{signing_input}.{b64(mac)}"
    body = await oauth_error(await post_token(client, assertion), 401, "invalid_client")
    assert "HS256" in body["error_description"]


@pytest.mark.parametrize(
    ("claims", "needle"),
    [
        ({"exp": int(time.time()) - 600, "iat": int(time.time()) - 900}, "expired"),
        ({"aud": "https://evil.example/v1/oauth/token"}, "aud"),
        ({"aud": None}, "aud"),
        ({"sub": "someone-else"}, "sub"),
        ({"exp": int(time.time()) + 3600}, "at most"),
        ({"iat": int(time.time()) + 600, "exp": int(time.time()) + 660}, "not valid yet"),
        ({"nbf": int(time.time()) + 600}, "not valid yet"),
        ({"jti": None}, "jti"),
        ({"exp": None}, "exp"),
    ],
)
async def test_bad_claims_are_refused(
    client: Any, provider: OnboardedProvider, claims: dict[str, Any], needle: str
) -> None:
    assertion = provider.assertion(client, **claims)
    body = await oauth_error(await post_token(client, assertion), 401, "invalid_client")
    assert needle in body["error_description"]


async def test_wrong_and_unknown_issuer_are_refused(
    client: Any, provider: OnboardedProvider
) -> None:
    # iss of another, real provider, signed with our key: that provider's keys do not verify it.
    other = await onboard(client, organisation="Other", key="p256")
    assertion = client_assertion(
        client, other.client_id, provider.private_key, provider.kid, sub=other.client_id
    )
    await oauth_error(await post_token(client, assertion), 401, "invalid_client")
    assertion = client_assertion(client, "nobody-1234", provider.private_key, provider.kid)
    body = await oauth_error(await post_token(client, assertion), 401, "invalid_client")
    assert body["error_description"] == "Unknown client."


async def test_a_replayed_jti_is_refused(client: Any, provider: OnboardedProvider) -> None:
    assertion = provider.assertion(client)
    assert (await post_token(client, assertion)).status == 200
    body = await oauth_error(await post_token(client, assertion), 401, "invalid_client")
    assert "replay" in body["error_description"]
    # The same jti from another provider is its own.
    other = await onboard(client, organisation="Other")
    jti = jwt.decode(assertion, options={"verify_signature": False})["jti"]
    assert (await post_token(client, other.assertion(client, jti=jti))).status == 200


async def test_expired_jtis_are_swept(client: Any, provider: OnboardedProvider) -> None:
    store = client.app[STORE]

    async def unit(tx: Any) -> None:
        await tx.execute(
            "INSERT INTO oauth_assertion_jtis (client_id, jti, expires_at) VALUES ($1, $2, $3)",
            provider.client_id,
            "old-jti",
            1000,
        )

    await store.write("test", unit)
    # The sweep runs at most once a minute; make this exchange the one that sweeps.
    client.app[TOKEN_ENDPOINT]._last_sweep = 0.0
    assert (await post_token(client, provider.assertion(client))).status == 200
    left = await store.fetchval("SELECT COUNT(*) FROM oauth_assertion_jtis WHERE jti = 'old-jti'")
    assert left == 0


async def test_unknown_kid_and_wrong_key_type_are_refused(
    client: Any, provider: OnboardedProvider
) -> None:
    assertion = client_assertion(client, provider.client_id, provider.private_key, "no-such-kid")
    body = await oauth_error(await post_token(client, assertion), 401, "invalid_client")
    assert "kid" in body["error_description"]
    # An Ed25519 signature under the kid of the registered P-256 key.
    ed_private, _ = new_key("ed25519")
    assertion = client_assertion(client, provider.client_id, ed_private, provider.kid)
    body = await oauth_error(await post_token(client, assertion), 401, "invalid_client")
    assert "cannot verify EdDSA" in body["error_description"]
    # ES256 header, but signed by another P-256 key: the signature does not verify.
    stranger, _ = new_key("p256")
    assertion = client_assertion(client, provider.client_id, stranger, provider.kid)
    body = await oauth_error(await post_token(client, assertion), 401, "invalid_client")
    assert "signature" in body["error_description"]


async def test_a_tampered_payload_is_refused(client: Any, provider: OnboardedProvider) -> None:
    head, payload, signature = provider.assertion(client).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["exp"] = claims["exp"] + 30
    forged = f"{head}.{b64(json.dumps(claims).encode())}.{signature}"
    await oauth_error(await post_token(client, forged), 401, "invalid_client")


async def test_a_kid_less_assertion_works_with_a_single_fitting_key(client: Any) -> None:
    provider = await onboard(client)
    assertion = client_assertion(client, provider.client_id, provider.private_key, None)
    assert (await post_token(client, assertion)).status == 200


async def test_a_suspended_provider_gets_no_token(
    client: Any, provider: OnboardedProvider
) -> None:
    response = await client.post(
        f"/admin/v1/providers/{provider.client_id}/suspend", headers=admin_headers()
    )
    assert response.status == 200
    response = await post_token(client, provider.assertion(client))
    await oauth_error(response, 400, "unauthorized_client")
    await client.post(f"/admin/v1/providers/{provider.client_id}/resume", headers=admin_headers())
    assert (await post_token(client, provider.assertion(client))).status == 200


async def test_offer_and_openapi_name_the_same_token_endpoint(client: Any) -> None:
    offer = await (await client.get("/.well-known/dma-interop")).json()
    assert offer["endpoints"]["token"] == token_url(client)
    assert offer["authentication"]["token_endpoint_auth_signing_alg_values_supported"] == [
        "ES256",
        "EdDSA",
    ]
    jwks = await (await client.get(offer["endpoints"]["jwks_uri"].split("8080", 1)[1])).json()
    assert jwks["keys"] and all(k["alg"] == "EdDSA" and "d" not in k for k in jwks["keys"])
