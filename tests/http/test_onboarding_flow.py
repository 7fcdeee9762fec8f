"""The whole flow: request -> approval -> client assertion -> token -> authenticated call."""

from __future__ import annotations

from typing import Any

import jwt

from tests.conftest import admin_headers
from tests.onboarding_helpers import (
    client_assertion,
    decide,
    new_key,
    post_token,
    request_status,
    submit_request,
)


async def test_request_to_first_authenticated_call(client: Any) -> None:
    private, jwk = new_key("p256")
    created = await submit_request(client, [jwk], webhook_url="https://hooks.example.org/dma")
    assert created["status"] == "received"
    assert created["deadline_at"] - created["received_at"] == 90 * 86_400_000

    status = await request_status(client, created["id"], created["status_token"])
    assert status["status"] == "received"
    assert status["client_id"] is None

    listed = await client.get(
        "/admin/v1/interop-requests?status=received", headers=admin_headers()
    )
    assert [r["id"] for r in (await listed.json())["items"]] == [created["id"]]

    response = await decide(client, created["id"], "approve")
    assert response.status == 200
    assert (await response.json())["status"] == "approved"

    status = await request_status(client, created["id"], created["status_token"])
    client_id = status["client_id"]
    assert status["status"] == "approved"
    assert status["webhook_secret"].startswith("whsec_")
    assert status["scopes"] == ["messages", "events", "keys", "lookup", "media"]
    assert [(t["from_status"], t["to_status"], t["actor"]) for t in status["transitions"]] == [
        (None, "received", "requester"),
        ("received", "approved", "admin"),
    ]
    # The webhook secret is shown once.
    again = await request_status(client, created["id"], created["status_token"])
    assert again["webhook_secret"] is None

    response = await post_token(client, client_assertion(client, client_id, private, jwk["kid"]))
    assert response.status == 200, await response.text()
    assert response.headers["Cache-Control"] == "no-store"
    issued = await response.json()
    assert issued["token_type"] == "Bearer"
    assert issued["expires_in"] == 600
    assert issued["scope"] == "messages events keys lookup media"

    # The token verifies against the published JWKS.
    jwks = await (await client.get("/.well-known/jwks.json")).json()
    header = jwt.get_unverified_header(issued["access_token"])
    key = jwt.PyJWKSet.from_dict(jwks)[header["kid"]]
    claims = jwt.decode(
        issued["access_token"], key, algorithms=["EdDSA"], audience="http://127.0.0.1:8080"
    )
    assert claims["sub"] == client_id

    response = await client.get(
        "/v1/me", headers={"Authorization": f"Bearer {issued['access_token']}"}
    )
    assert response.status == 200, await response.text()
    me = await response.json()
    assert me["client_id"] == client_id
    assert me["state"] == "active"
    assert me["services"] == ["whatsapp", "messenger", "instagram"]
    assert me["webhook_url"] == "https://hooks.example.org/dma"
    assert set(me["token_scopes"]) == set(issued["scope"].split())


async def test_onboard_helper_gives_a_working_token(client: Any, onboarded: Any) -> None:
    response = await client.get("/v1/me", headers=onboarded.headers())
    assert response.status == 200
    assert (await response.json())["client_id"] == onboarded.client_id


async def test_onboarding_on_each_storage_backend(backend_client: Any) -> None:
    """Intake, decision, token (jti kept), suspension: the same on SQLite and PostgreSQL."""
    from tests.onboarding_helpers import onboard

    client = backend_client
    provider = await onboard(client, webhook_url="https://hooks.example.org/in")
    assert provider.webhook_secret
    assert (await post_token(client, provider.assertion(client))).status == 200
    replay = provider.assertion(client)
    assert (await post_token(client, replay)).status == 200
    assert (await post_token(client, replay)).status == 401
    response = await client.post(
        f"/admin/v1/providers/{provider.client_id}/suspend", headers=admin_headers()
    )
    assert (await response.json())["state"] == "suspended"
    assert (await client.get("/v1/me", headers=provider.headers())).status == 403
    listed = await client.get(
        "/admin/v1/interop-requests?status=approved", headers=admin_headers()
    )
    assert [r["client_id"] for r in (await listed.json())["items"]] == [provider.client_id]
