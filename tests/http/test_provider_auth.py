"""The auth middleware: access tokens, suspension, scopes, rate limits and tenant isolation."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jwt
import msgspec
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.app import create_app
from gateway.config import BucketConfig, Config
from gateway.http.app_keys import ACCESS_TOKENS, CONFIG
from gateway.http.auth import current_provider, public, requires_scope
from gateway.http.body import json_response
from gateway.service.access_tokens import AccessTokens
from gateway.service.tenancy import require_owner
from tests.conftest import admin_headers, assert_problem, make_config
from tests.egress_helpers import with_test_hosts
from tests.onboarding_helpers import OnboardedProvider, onboard, post_token

# Test-only routes: objects owned by a provider, and routes of each declaration.
OBJECTS = {"o1": "owner-a", "o2": "owner-b"}


@requires_scope("media")
async def media_only(request: web.Request) -> web.Response:
    return json_response({"client_id": current_provider(request).client_id})


async def undeclared(request: web.Request) -> web.Response:
    return json_response({"reached": True})


@public(limit="intake")
async def open_route(request: web.Request) -> web.Response:
    return json_response({"principal": request.get("principal") is not None})


@requires_scope()
async def owned_object(request: web.Request) -> web.Response:
    provider = current_provider(request)
    object_id = request.match_info["id"]
    assert provider.client_id is not None
    found = require_owner(
        object_id if object_id in OBJECTS else None,
        owner=OBJECTS.get(object_id),
        client_id=provider.client_id,
        what="object",
    )
    return json_response({"id": found})


@pytest.fixture
def config(backend_config: Config) -> Config:
    """Every test here runs on each storage backend."""
    return backend_config


def build(config: Config) -> web.Application:
    app = with_test_hosts(create_app(config))
    app.router.add_get("/v1/test/media", media_only)
    app.router.add_get("/v1/test/undeclared", undeclared)
    app.router.add_get("/v1/test/open", open_route)
    app.router.add_get("/v1/test/objects/{id}", owned_object)
    return app


@pytest.fixture
async def tclient(config: Config, aiohttp_client: Any) -> Any:
    return await aiohttp_client(build(config))


NONE_HEADER = jwt.utils.base64url_encode(b'{"alg":"none","typ":"at+jwt"}').decode()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def problem(response: Any, status: int, type_: str) -> dict[str, Any]:
    body: dict[str, Any] = await response.json(content_type=None)
    assert_problem(response.status, response.content_type, body, status, type_)
    return body


async def invalid_token(response: Any) -> dict[str, Any]:
    body = await problem(response, 401, "/problems/invalid-token")
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    return body


async def test_no_token_is_401_with_a_bearer_challenge(tclient: Any) -> None:
    for path in ("/v1/me", "/v1/test/media", "/v1/test/undeclared"):
        response = await tclient.get(path)
        await problem(response, 401, "/problems/unauthorized")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    response = await tclient.get("/v1/me", headers={"Authorization": "Basic abc"})
    await problem(response, 401, "/problems/unauthorized")


async def test_undeclared_v1_routes_fail_closed(tclient: Any) -> None:
    provider = await onboard(tclient)
    assert (await tclient.get("/v1/test/undeclared")).status == 401
    response = await tclient.get("/v1/test/undeclared", headers=provider.headers())
    assert await response.json() == {"reached": True}


async def test_public_routes_need_no_token(tclient: Any) -> None:
    response = await tclient.get("/v1/test/open")
    assert response.status == 200
    for path in (
        "/healthz",
        "/.well-known/jwks.json",
        "/.well-known/dma-interop",
        "/openapi.json",
    ):
        assert (await tclient.get(path)).status == 200


def forge(tclient: Any, **claims: Any) -> str:
    """A token signed with the gateway's own current key, with `claims` changed."""
    tokens: AccessTokens = tclient.app[ACCESS_TOKENS]
    key = tokens._keys[0]
    now = int(time.time())
    body = {
        "iss": tokens.issuer,
        "aud": tokens.issuer,
        "sub": "someone",
        "client_id": "someone",
        "scope": "messages",
        "iat": now,
        "exp": now + 60,
    }
    body.update(claims)
    return jwt.encode(
        {k: v for k, v in body.items() if v is not None},
        key.private_key(),
        algorithm="EdDSA",
        headers={"kid": key.kid, "typ": "at+jwt"},
    )


async def test_invalid_access_tokens_are_refused(tclient: Any) -> None:
    provider = await onboard(tclient)
    me = provider.client_id
    head, payload, signature = provider.access_token.split(".")
    other = await onboard(tclient, organisation="Other")
    _, other_payload, _ = other.access_token.split(".")
    stranger = Ed25519PrivateKey.generate()
    kid = jwt.get_unverified_header(provider.access_token)["kid"]
    bad = {
        "garbage": "not-a-token",
        "status token": provider.status_token,
        "client assertion": provider.assertion(tclient),
        "spliced payload": f"{head}.{other_payload}.{signature}",
        "wrong signer": jwt.encode(
            jwt.decode(provider.access_token, options={"verify_signature": False}),
            stranger,
            algorithm="EdDSA",
            headers={"kid": kid, "typ": "at+jwt"},
        ),
        "unknown kid": jwt.encode(
            {"sub": me}, stranger, algorithm="EdDSA", headers={"kid": "nope", "typ": "at+jwt"}
        ),
        "alg none": f"{NONE_HEADER}.{payload}.",
        "wrong aud": forge(tclient, sub=me, aud="https://elsewhere.example"),
        "wrong iss": forge(tclient, sub=me, iss="https://elsewhere.example"),
        "expired": forge(tclient, sub=me, iat=int(time.time()) - 900, exp=int(time.time()) - 300),
        "no exp": forge(tclient, sub=me, exp=None),
        "unknown provider": forge(tclient, sub="nobody-0000"),
    }
    for name, token in bad.items():
        response = await tclient.get("/v1/me", headers=bearer(token))
        body = await invalid_token(response)
        assert token not in await response.text(), name
        assert body["status"] == 401, name
    assert (await tclient.get("/v1/me", headers=provider.headers())).status == 200


async def test_suspension_takes_effect_at_once_for_tokens_already_issued(tclient: Any) -> None:
    provider = await onboard(tclient)
    assert (await tclient.get("/v1/me", headers=provider.headers())).status == 200  # cached now
    response = await tclient.post(
        f"/admin/v1/providers/{provider.client_id}/suspend",
        json={"reason": "abuse report 17"},
        headers=admin_headers(),
    )
    assert response.status == 200
    assert (await response.json())["state"] == "suspended"
    response = await tclient.get("/v1/me", headers=provider.headers())
    await problem(response, 403, "/problems/provider-suspended")
    # Its own request status cannot be read with the token either.
    response = await tclient.get(
        f"/v1/interop-requests/{provider.request_id}", headers=provider.headers()
    )
    await problem(response, 403, "/problems/provider-suspended")
    response = await tclient.post(
        f"/admin/v1/providers/{provider.client_id}/resume", headers=admin_headers()
    )
    assert (await response.json())["state"] == "active"
    assert (await tclient.get("/v1/me", headers=provider.headers())).status == 200


async def test_suspend_and_resume_are_idempotent_recorded_and_listed(tclient: Any) -> None:
    from gateway.http.app_keys import STORE

    provider = await onboard(tclient)
    other = await onboard(tclient, organisation="Other")
    url = f"/admin/v1/providers/{provider.client_id}"
    for _ in range(2):
        response = await tclient.post(
            f"{url}/suspend", json={"reason": "r"}, headers=admin_headers()
        )
        assert response.status == 200
    rows = await tclient.app[STORE].fetch(
        "SELECT from_state, to_state, actor, reason FROM onboarding_transitions "
        "WHERE subject_kind = 'provider' AND subject_id = $1 ORDER BY seq",
        provider.client_id,
    )
    assert [tuple(r) for r in rows] == [
        (None, "active", "admin", f"approved request {provider.request_id}"),
        ("active", "suspended", "admin", "r"),
    ]
    listed = await (await tclient.get("/admin/v1/providers", headers=admin_headers())).json()
    assert {p["client_id"]: p["state"] for p in listed["items"]} == {
        provider.client_id: "suspended",
        other.client_id: "active",
    }
    suspended = await (
        await tclient.get("/admin/v1/providers?state=suspended", headers=admin_headers())
    ).json()
    assert [p["client_id"] for p in suspended["items"]] == [provider.client_id]
    assert "webhook_secret" not in suspended["items"][0] and "jwks" not in suspended["items"][0]
    response = await tclient.get("/admin/v1/providers?state=gone", headers=admin_headers())
    await problem(response, 422, "/problems/validation")
    response = await tclient.post("/admin/v1/providers/nobody/suspend", headers=admin_headers())
    await problem(response, 404, "/problems/not-found")
    response = await tclient.post(f"{url}/resume", json={"reason": 5}, headers=admin_headers())
    await problem(response, 422, "/problems/validation")


async def test_a_missing_scope_is_403(tclient: Any) -> None:
    provider = await onboard(tclient, scope="messages events")
    response = await tclient.get("/v1/test/media", headers=provider.headers())
    body = await problem(response, 403, "/problems/insufficient-scope")
    assert body["required_scope"] == "media"
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    full = await onboard(tclient, organisation="Full")
    response = await tclient.get("/v1/test/media", headers=full.headers())
    assert (await response.json())["client_id"] == full.client_id


async def test_verified_tokens_are_cached(tclient: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = await onboard(tclient)
    tokens: AccessTokens = tclient.app[ACCESS_TOKENS]
    calls = []
    real = tokens.verify
    monkeypatch.setattr(tokens, "verify", lambda t: calls.append(t) or real(t))
    for _ in range(5):
        assert (await tclient.get("/v1/me", headers=provider.headers())).status == 200
    assert len(calls) == 1


async def test_me_shows_the_provider_and_this_tokens_scopes(tclient: Any) -> None:
    provider = await onboard(tclient, services=("whatsapp",), scope="lookup messages")
    me = await (await tclient.get("/v1/me", headers=provider.headers())).json()
    assert me == {
        "client_id": provider.client_id,
        "organisation": "Example Messenger",
        "state": "active",
        "services": ["whatsapp"],
        "functionalities": me["functionalities"],
        "granted_scopes": ["messages", "events", "keys", "lookup", "media"],
        "token_scopes": ["messages", "lookup"],
        "webhook_url": None,
    }
    assert "text" in me["functionalities"]


async def test_the_webhook_secret_can_be_rotated_by_its_provider(tclient: Any) -> None:
    hooked = await onboard(tclient, webhook_url="https://hooks.example.org/in")
    assert hooked.webhook_secret is not None
    response = await tclient.post("/v1/me/webhook-secret", headers=hooked.headers())
    assert response.status == 200 and response.headers["Cache-Control"] == "no-store"
    fresh = (await response.json())["webhook_secret"]
    assert fresh.startswith("whsec_") and fresh != hooked.webhook_secret
    from gateway.http.app_keys import PROVIDERS

    target = await tclient.app[PROVIDERS].webhook(hooked.client_id)
    assert target is not None and target.secret == fresh
    plain = await onboard(tclient, organisation="No hooks")
    response = await tclient.post("/v1/me/webhook-secret", headers=plain.headers())
    await problem(response, 409, "/problems/conflict")
    assert await tclient.app[PROVIDERS].webhook(plain.client_id) is None


# -- tenant isolation -------------------------------------------------------------------------


async def test_a_provider_never_sees_another_providers_request(tclient: Any) -> None:
    a = await onboard(tclient, organisation="A")
    b = await onboard(tclient, organisation="B")
    own = await tclient.get(f"/v1/interop-requests/{a.request_id}", headers=a.headers())
    assert own.status == 200
    status = await own.json()
    assert status["client_id"] == a.client_id and status["webhook_secret"] is None
    foreign = await tclient.get(f"/v1/interop-requests/{a.request_id}", headers=b.headers())
    missing = await tclient.get("/v1/interop-requests/nope", headers=b.headers())
    one = await problem(foreign, 404, "/problems/not-found")
    two = await problem(missing, 404, "/problems/not-found")
    assert {k: v for k, v in one.items() if k not in ("instance", "request_id")} == {
        k: v for k, v in two.items() if k not in ("instance", "request_id")
    }


async def test_the_tenancy_helper_answers_foreign_like_missing(tclient: Any) -> None:
    from tests.onboarding_helpers import register_provider

    token_a = await register_provider(tclient.app, "owner-a")
    token_b = await register_provider(tclient.app, "owner-b")
    assert (await tclient.get("/v1/test/objects/o1", headers=bearer(token_a))).status == 200
    foreign = await tclient.get("/v1/test/objects/o1", headers=bearer(token_b))
    missing = await tclient.get("/v1/test/objects/o9", headers=bearer(token_b))
    one = await problem(foreign, 404, "/problems/not-found")
    two = await problem(missing, 404, "/problems/not-found")
    assert one["detail"] == two["detail"]


# -- rate limits ------------------------------------------------------------------------------


def limited(tmp_path: Path) -> Config:
    config = make_config(tmp_path / "data")
    limits = msgspec.structs.replace(
        config.limits,
        default=BucketConfig(rate_per_s=0.5, burst=2),
        intake=BucketConfig(rate_per_s=0.01, burst=3),
        token=BucketConfig(rate_per_s=0.01, burst=4),
    )
    return msgspec.structs.replace(config, limits=limits)


async def rate_limited(response: Any, retry_after: int) -> None:
    body = await problem(response, 429, "/problems/rate-limited")
    assert response.headers["Retry-After"] == str(retry_after)
    assert body["limit_class"]


async def test_provider_rate_limit_is_per_provider_and_route_class(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client = await aiohttp_client(build(limited(tmp_path)))
    a = await onboard(client, organisation="A")
    b = await onboard(client, organisation="B")
    for _ in range(2):
        assert (await client.get("/v1/me", headers=a.headers())).status == 200
    await rate_limited(await client.get("/v1/me", headers=a.headers()), 2)
    # Another provider has its own bucket, and another route class is another bucket.
    assert (await client.get("/v1/me", headers=b.headers())).status == 200
    assert (await client.get("/v1/test/media", headers=a.headers())).status == 200


async def test_anonymous_intake_and_token_are_limited_per_ip(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client = await aiohttp_client(build(limited(tmp_path)))
    provider: OnboardedProvider = await onboard(client)  # 1 intake, 1 token
    for _ in range(2):
        assert (await client.get("/v1/test/open")).status == 200  # intake class: 3 in all
    await rate_limited(await client.get("/v1/test/open"), 100)
    for _ in range(3):
        assert (await post_token(client, provider.assertion(client))).status == 200
    response = await post_token(client, provider.assertion(client))
    await rate_limited(response, 100)


async def test_rate_limits_can_be_switched_off(aiohttp_client: Any, tmp_path: Path) -> None:
    config = limited(tmp_path)
    config = msgspec.structs.replace(
        config, limits=msgspec.structs.replace(config.limits, enabled=False)
    )
    client = await aiohttp_client(build(config))
    assert client.app[CONFIG].limits.enabled is False
    for _ in range(5):
        assert (await client.get("/v1/test/open")).status == 200
