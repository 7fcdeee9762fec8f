"""Interop-request intake, the requester's status and the admin's decision."""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
import pytest

from gateway.app import create_app
from gateway.config import Config
from gateway.http.app_keys import EGRESS_RESOLVER, STORE
from tests.conftest import admin_headers, assert_problem
from tests.egress_helpers import TEST_HOSTS, StaticResolver
from tests.onboarding_helpers import decide, new_key, request_status, submit_request


@pytest.fixture
def config(backend_config: Config) -> Config:
    """Every test here runs on each storage backend."""
    return backend_config


def intake(**overrides: Any) -> dict[str, Any]:
    _, jwk = new_key("ed25519", kid="k1")
    body: dict[str, Any] = {
        "organisation": "Example Messenger",
        "contact_email": "interop@example.org",
        "services": ["whatsapp"],
        "functionalities": ["text"],
        "jwks": {"keys": [jwk]},
    }
    body.update(overrides)
    return body


async def problem(response: Any, status: int, type_: str, field: str | None = None) -> Any:
    body = await response.json(content_type=None)
    assert_problem(response.status, response.content_type, body, status, type_)
    if field is not None:
        assert body["field"] == field
    return body


_, EC_JWK = new_key("p256", kid="ec")
_, ED_JWK = new_key("ed25519", kid="ed")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"services": ["signal"]}, "$.services[0]"),
        ({"services": ["whatsapp", "whatsapp"]}, "$.services[1]"),
        ({"services": []}, "$.services"),
        ({"functionalities": ["text", "telepathy"]}, "$.functionalities[1]"),
        ({"contact_email": "not-an-email"}, "$.contact_email"),
        ({"contact_email": "a@b"}, "$.contact_email"),
        ({"organisation": "   "}, "$.organisation"),
        ({"webhook_url": "http://hooks.example.org/x"}, "$.webhook_url"),
        ({"webhook_url": "ftp://hooks.example.org/x"}, "$.webhook_url"),
        ({"webhook_url": "https://user:pw@hooks.example.org/x"}, "$.webhook_url"),
        ({"webhook_url": "https:///nohost"}, "$.webhook_url"),
        ({"jwks": {"keys": []}}, "$.jwks.keys"),
        ({"jwks": {"keys": [{**EC_JWK, "d": "c2VjcmV0"}]}}, "$.jwks.keys[0].d"),
        (
            {"jwks": {"keys": [ED_JWK, {**ED_JWK, "kid": "x", "d": "c2VjcmV0"}]}},
            "$.jwks.keys[1].d",
        ),
        ({"jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}}, "$.jwks.keys[0].k"),
        (
            {"jwks": {"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "r"}]}},
            "$.jwks.keys[0].kty",
        ),
        ({"jwks": {"keys": [{**EC_JWK, "crv": "P-384"}]}}, "$.jwks.keys[0].kty"),
        (
            {"jwks": {"keys": [{k: v for k, v in EC_JWK.items() if k != "kid"}]}},
            "$.jwks.keys[0].kid",
        ),
        ({"jwks": {"keys": [EC_JWK, EC_JWK]}}, "$.jwks.keys[1].kid"),
        ({"jwks": {"keys": [{**EC_JWK, "alg": "EdDSA"}]}}, "$.jwks.keys[0].alg"),
        ({"jwks": {"keys": [{**EC_JWK, "x": ED_JWK["x"]}]}}, "$.jwks.keys[0].x"),
        ({"surprise": 1}, "$.surprise"),
        ({"jwks": None}, "$.jwks"),
    ],
)
async def test_bad_intake_is_422_naming_the_field(
    client: Any, overrides: dict[str, Any], field: str
) -> None:
    response = await client.post("/v1/interop-requests", json=intake(**overrides))
    await problem(response, 422, "/problems/validation", field)


async def test_a_private_key_is_refused_with_a_clear_message(client: Any) -> None:
    response = await client.post(
        "/v1/interop-requests", json=intake(jwks={"keys": [{**ED_JWK, "d": "c2VjcmV0"}]})
    )
    body = await problem(response, 422, "/problems/validation", "$.jwks.keys[0].d")
    assert "private" in body["detail"]
    assert "c2VjcmV0" not in await response.text()


@pytest.mark.parametrize(
    "url", ["https://hooks.example.org/dma", "http://127.0.0.1:9000/hook", "http://localhost/h"]
)
async def test_good_webhook_urls_are_accepted(client: Any, url: str) -> None:
    response = await client.post("/v1/interop-requests", json=intake(webhook_url=url))
    assert response.status == 201


INTERNAL_HOSTS = {
    "intranet.example.org": ["10.20.30.40"],
    "metadata.example.org": ["169.254.169.254"],
    "mixed.example.org": ["93.184.215.14", "192.168.0.10"],
    "rebind.example.org": ["::ffff:127.0.0.1"],
}


async def intake_client(aiohttp_client: Any, config: Config, *, allow_loopback: bool) -> Any:
    webhooks = msgspec.structs.replace(config.webhooks, allow_loopback=allow_loopback)
    app = create_app(msgspec.structs.replace(config, webhooks=webhooks))
    app[EGRESS_RESOLVER] = StaticResolver({**TEST_HOSTS, **INTERNAL_HOSTS})
    return await aiohttp_client(app)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://10.0.0.1/hook", "is a private address"),
        ("https://172.16.5.4/hook", "is a private address"),
        ("https://192.168.1.1/hook", "is a private address"),
        ("https://169.254.169.254/latest/meta-data", "is a link-local address"),
        ("https://[fd00::1]/hook", "is a private address"),
        ("https://[fe80::1]/hook", "is a link-local address"),
        ("https://[::ffff:10.0.0.1]/hook", "is a private address"),
        ("https://224.0.0.1/hook", "is a multicast address"),
        ("https://0.0.0.0/hook", "is an unspecified address"),
        ("https://100.64.0.1/hook", "is a shared (carrier-grade NAT) address"),
        ("https://240.0.0.1/hook", "is a private address"),
        ("https://127.0.0.1/hook", "is a loopback address"),
        ("https://[::1]/hook", "is a loopback address"),
        ("https://localhost/hook", "resolves to a loopback address"),
        ("https://intranet.example.org/hook", "resolves to a private address"),
        ("https://metadata.example.org/hook", "resolves to a link-local address"),
        ("https://mixed.example.org/hook", "resolves to a private address"),
        ("https://rebind.example.org/hook", "resolves to a loopback address"),
        ("https://internal.corp/hook", "does not resolve"),
    ],
)
async def test_webhook_urls_to_internal_addresses_are_refused(
    config: Config, aiohttp_client: Any, url: str, reason: str
) -> None:
    client = await intake_client(aiohttp_client, config, allow_loopback=False)
    response = await client.post("/v1/interop-requests", json=intake(webhook_url=url))
    body = await problem(response, 422, "/problems/validation", "$.webhook_url")
    assert reason in body["detail"]
    assert await client.app[STORE].fetchval("SELECT count(*) FROM interop_requests") == 0


@pytest.mark.parametrize("url", ["http://127.0.0.1:9000/hook", "http://localhost/h"])
async def test_http_to_loopback_needs_the_development_setting(
    config: Config, aiohttp_client: Any, url: str
) -> None:
    client = await intake_client(aiohttp_client, config, allow_loopback=False)
    response = await client.post("/v1/interop-requests", json=intake(webhook_url=url))
    await problem(response, 422, "/problems/validation", "$.webhook_url")


async def test_loopback_allowed_in_development_still_refuses_the_private_network(
    config: Config, aiohttp_client: Any
) -> None:
    client = await intake_client(aiohttp_client, config, allow_loopback=True)
    for url in ("http://10.0.0.1/hook", "https://10.0.0.1/hook", "https://[::1]:8443/h"):
        response = await client.post("/v1/interop-requests", json=intake(webhook_url=url))
        expected = 201 if url.startswith("https://[::1]") else 422
        assert response.status == expected, url


async def test_intake_answers_and_keeps_only_a_hash_of_the_status_token(client: Any) -> None:
    response = await client.post("/v1/interop-requests", json=intake(functionalities=[]))
    assert response.status == 201
    created = await response.json()
    assert response.headers["Location"] == f"/v1/interop-requests/{created['id']}"
    assert set(created) == {
        "id",
        "status",
        "received_at",
        "deadline_at",
        "status_token",
        "eligibility_due_at",
    }
    assert created["status"] == "received"
    assert created["deadline_at"] == created["received_at"] + 90 * 86_400_000
    row = await client.app[STORE].fetchrow(
        "SELECT * FROM interop_requests WHERE id = $1", created["id"]
    )
    assert created["status_token"] not in [str(v) for v in dict(row).values()]
    digest = hashlib.sha256(created["status_token"].encode()).hexdigest()
    assert row["status_token_hash"] == digest
    # No functionality named: all of the offer's are requested.
    status = await request_status(client, created["id"], created["status_token"])
    assert "text" in status["functionalities"] and "voice_calls" in status["functionalities"]


async def test_deadline_follows_the_configured_days(config: Any, aiohttp_client: Any) -> None:
    client = await aiohttp_client(
        create_app(msgspec.structs.replace(config, request_deadline_days=30))
    )
    created = await (await client.post("/v1/interop-requests", json=intake())).json()
    assert created["deadline_at"] - created["received_at"] == 30 * 86_400_000


async def test_status_needs_the_right_token(client: Any) -> None:
    created = await (await client.post("/v1/interop-requests", json=intake())).json()
    url = f"/v1/interop-requests/{created['id']}"
    response = await client.get(url)
    await problem(response, 401, "/problems/unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = await client.get(url, headers={"Authorization": "Bearer not-the-token"})
    missing = await client.get(
        "/v1/interop-requests/nope", headers={"Authorization": f"Bearer {created['status_token']}"}
    )
    one = await problem(wrong, 404, "/problems/not-found")
    other = await problem(missing, 404, "/problems/not-found")
    assert one["detail"] == other["detail"]  # a wrong token looks like an unknown id


async def test_rejection_needs_a_reason_and_is_final(client: Any) -> None:
    _, jwk = new_key()
    created = await submit_request(client, [jwk])
    response = await decide(client, created["id"], "reject")
    await problem(response, 422, "/problems/validation", "$.reason")
    response = await decide(client, created["id"], "reject", "Out of scope of Art. 7")
    assert response.status == 200
    decided = await response.json()
    assert decided["status"] == "rejected" and decided["client_id"] is None
    status = await request_status(client, created["id"], created["status_token"])
    assert status["reason"] == "Out of scope of Art. 7"
    assert status["webhook_secret"] is None and status["client_id"] is None
    assert [(t["to_status"], t["actor"], t["reason"]) for t in status["transitions"]] == [
        ("received", "requester", None),
        ("rejected", "admin", "Out of scope of Art. 7"),
    ]
    response = await decide(client, created["id"], "approve")
    await problem(response, 409, "/problems/conflict")


async def test_decisions_are_checked(client: Any) -> None:
    response = await decide(client, "no-such-request", "approve")
    await problem(response, 404, "/problems/not-found")
    _, jwk = new_key()
    created = await submit_request(client, [jwk])
    response = await client.post(
        f"/admin/v1/interop-requests/{created['id']}/decision",
        json={"decision": "maybe"},
        headers=admin_headers(),
    )
    await problem(response, 422, "/problems/validation", "$.decision")
    assert (await decide(client, created["id"])).status == 200
    await problem(await decide(client, created["id"]), 409, "/problems/conflict")


async def test_functionalities_limit_the_scopes(client: Any) -> None:
    _, jwk = new_key()
    created = await submit_request(client, [jwk], functionalities=("text", "receipts"))
    await decide(client, created["id"])
    status = await request_status(client, created["id"], created["status_token"])
    assert status["functionalities"] == ["text", "receipts"]
    assert status["scopes"] == ["messages", "events", "keys", "lookup"]
    created = await submit_request(client, [jwk], functionalities=("text", "images"))
    await decide(client, created["id"])
    status = await request_status(client, created["id"], created["status_token"])
    assert status["scopes"] == ["messages", "events", "keys", "lookup", "media"]


async def test_no_webhook_url_no_webhook_secret(client: Any) -> None:
    _, jwk = new_key()
    created = await submit_request(client, [jwk])
    await decide(client, created["id"])
    status = await request_status(client, created["id"], created["status_token"])
    assert status["client_id"] and status["webhook_secret"] is None


async def test_admin_lists_by_status_nearest_deadline_first(client: Any) -> None:
    _, jwk = new_key()
    first = await submit_request(client, [jwk], organisation="First")
    second = await submit_request(client, [jwk], organisation="Second")
    await decide(client, second["id"])

    async def listed(query: str) -> list[str]:
        response = await client.get(f"/admin/v1/interop-requests{query}", headers=admin_headers())
        assert response.status == 200
        return [r["organisation"] for r in (await response.json())["items"]]

    assert await listed("") == ["First", "Second"]
    assert await listed("?status=received") == ["First"]
    assert await listed("?status=approved") == ["Second"]
    assert await listed("?limit=1") == ["First"]
    items = (
        await (await client.get("/admin/v1/interop-requests", headers=admin_headers())).json()
    )["items"]
    assert items[0]["contact_email"] == "interop@example.org"
    assert "status_token" not in items[0] and "status_token_hash" not in items[0]
    response = await client.get("/admin/v1/interop-requests?status=lost", headers=admin_headers())
    await problem(response, 422, "/problems/validation", "status")
    response = await client.get("/admin/v1/interop-requests?limit=0", headers=admin_headers())
    await problem(response, 422, "/problems/validation", "limit")
    assert first["id"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/admin/v1/interop-requests"),
        ("POST", "/admin/v1/interop-requests/x/decision"),
        ("GET", "/admin/v1/providers"),
        ("POST", "/admin/v1/providers/x/suspend"),
        ("POST", "/admin/v1/providers/x/resume"),
        ("POST", "/admin/v1/token-keys/rotate"),
    ],
)
async def test_admin_routes_refuse_a_wrong_admin_token(
    client: Any, method: str, path: str
) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong-admin-token"}):
        response = await client.request(
            method, path, headers=headers, json={"decision": "approve"}
        )
        await problem(response, 401, "/problems/unauthorized")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
