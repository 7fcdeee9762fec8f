"""The reach policy at every provider route: approved services, functionalities, tenancy.

A user a provider may not reach (a service it is not approved for, another provider's user)
answers exactly like a user who does not exist (issue #16). Keys and media: see
test_key_directory.py and test_media.py.
"""

from __future__ import annotations

from typing import Any

from gateway.http.app_keys import STORE
from tests.conftest import assert_problem
from tests.http.providers import provider_headers
from tests.http.relay_support import ThirdPartyUser, sandbox_user
from tests.http.test_relay_roundtrip import rclient  # noqa: F401 (fixture)
from tests.onboarding_helpers import register_provider

ENCRYPTED = {"protocol": "olm.v1", "type": 0, "body": "AAAA", "sender_key": "x"}


def bodies_for(alice: ThirdPartyUser, to: str) -> dict[str, dict[str, Any]]:
    """A message, a receipt and a typing signal from `alice` to `to`, by route."""
    return {
        "/v1/messages": alice.message(to, encrypted=ENCRYPTED),
        "/v1/receipts": {"message_id": "m1", "from": alice.uri, "to": to, "status": "read"},
        "/v1/typing": {"from": alice.uri, "to": to, "state": "on"},
    }


async def send(alice: ThirdPartyUser, route: str, to: str) -> Any:
    return await alice.client.post(route, json=bodies_for(alice, to)[route], headers=alice.headers)


async def unknown(response: Any) -> dict[str, Any]:
    body = await response.json()
    assert_problem(
        response.status, response.content_type, body, 404, "/problems/unknown-recipient"
    )
    return {k: v for k, v in body.items() if k not in ("request_id", "instance")}


async def test_an_unapproved_service_looks_like_nobody_on_every_route(
    rclient: Any,  # noqa: F811
) -> None:
    client = rclient
    await register_provider(client.app, "narrow", services=("whatsapp", "messenger"))
    ig = await sandbox_user(client, "instagram", "1789", consent="all")
    alice = ThirdPartyUser(client, "narrow", "alice")
    for route in ("/v1/messages", "/v1/receipts", "/v1/typing"):
        answers = []
        for to in (ig, "mimi://instagram/u/nobody", "mimi://whatsapp/u/nobody"):
            response = await client.post(
                route, json=bodies_for(alice, to)[route], headers=alice.headers
            )
            answers.append(await unknown(response))
        assert answers[0] == answers[1] == answers[2], route
    assert await client.app[STORE].fetchval("SELECT count(*) FROM relay_messages") == 0
    lookup = {"service": "instagram", "identifiers": ["1789"]}
    response = await client.post("/v1/lookup", json=lookup, headers=alice.headers)
    assert response.status == 200 and await response.json() == {"users": []}
    # The same user is found by a provider approved for Instagram.
    response = await client.post("/v1/lookup", json=lookup, headers=provider_headers("acme"))
    assert (await response.json())["users"] == [{"identifier": "1789", "uri": ig}]


async def test_another_providers_user_looks_like_nobody_on_every_route(
    rclient: Any,  # noqa: F811
) -> None:
    client = rclient
    bob = ThirdPartyUser(client, "beta", "bob")
    await bob.publish_keys()
    alice = ThirdPartyUser(client, "acme", "alice")
    for route in ("/v1/messages", "/v1/receipts", "/v1/typing"):
        answers = []
        for to in (bob.uri, "mimi://beta/u/nobody"):
            response = await client.post(
                route, json=bodies_for(alice, to)[route], headers=alice.headers
            )
            answers.append(await unknown(response))
        assert answers[0] == answers[1], route


async def test_receipts_and_typing_need_their_functionality(rclient: Any) -> None:  # noqa: F811
    client = rclient
    await register_provider(client.app, "texter")
    await client.app[STORE].write(
        "test_functionalities",
        lambda tx: tx.execute(
            "UPDATE providers SET functionalities = $1 WHERE client_id = 'texter'", '["text"]'
        ),
    )
    peer = await sandbox_user(client, "whatsapp", "4915112345678", consent="all")
    alice = ThirdPartyUser(client, "texter", "alice")
    bodies = bodies_for(alice, peer)
    for route, name in (("/v1/receipts", "receipts"), ("/v1/typing", "typing")):
        response = await client.post(route, json=bodies[route], headers=alice.headers)
        body = await response.json()
        assert_problem(response.status, response.content_type, body, 403, "/problems/forbidden")
        assert name in body["detail"]
    # Refused before the recipient is looked at: a missing user gets the same answer.
    missing = bodies_for(alice, "mimi://whatsapp/u/nobody")["/v1/typing"]
    response = await client.post("/v1/typing", json=missing, headers=alice.headers)
    assert response.status == 403
