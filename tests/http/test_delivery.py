"""Delivery: outages retried with nothing lost or doubled, order kept, failures reported."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.app import create_app
from gateway.config import Config
from gateway.http.app_keys import STORE
from tests.conftest import admin_headers
from tests.http import providers
from tests.http.relay_support import ThirdPartyUser, events_of, eventually, inbox, sandbox_user
from tests.http.test_relay_roundtrip import fast


@pytest.fixture
async def client(backend_config: Config, aiohttp_client: Any) -> Any:
    app = create_app(fast(backend_config, max_attempts=4))
    return await aiohttp_client(providers.act_as_providers(app))


async def outage(client: Any, service: str, down: bool) -> None:
    response = await client.post(
        "/sandbox/v1/outage", json={"service": service, "down": down}, headers=admin_headers()
    )
    assert response.status == 200


async def texts(client: Any, peer: str) -> list[str]:
    items = await inbox(client, peer)
    return [i["payload"]["entry"][0]["messaging"][0]["message"]["text"] for i in items]


async def send_texts(alice: ThirdPartyUser, peer: str, words: list[str]) -> list[str]:
    ids = []
    for word in words:
        body = alice.message(peer, encrypted=await alice.encrypt_for(peer, {"text": word}))
        response = await alice.send(body)
        assert response.status == 202
        ids.append(body["id"])
    return ids


async def test_platform_down_and_back_loses_nothing_and_doubles_nothing(client: Any) -> None:
    peer = await sandbox_user(client, "messenger", "42")
    alice = ThirdPartyUser(client, "acme", "alice")
    await alice.publish_keys()
    await outage(client, "messenger", True)
    await send_texts(alice, peer, ["one", "two"])

    async def retried() -> bool:
        attempts = await client.app[STORE].fetchval("SELECT MAX(attempts) FROM relay_outbox")
        return bool(attempts and attempts >= 1)

    await eventually(retried)
    assert await inbox(client, peer) == []
    await outage(client, "messenger", False)
    await send_texts(alice, peer, ["three"])
    got = await eventually(lambda: _n_texts(client, peer, 3))
    assert got == ["one", "two", "three"]  # in order within the conversation, once each

    async def outbox_empty() -> bool:
        return await client.app[STORE].fetchval("SELECT COUNT(*) FROM relay_outbox") == 0

    # The inbox is written by the platform's own unit; the outbox row goes in the worker's next.
    assert await eventually(outbox_empty)


async def _n_texts(client: Any, peer: str, n: int) -> list[str] | None:
    got = await texts(client, peer)
    return got if len(got) >= n else None


async def test_consent_revoked_before_delivery_fails_the_message(client: Any) -> None:
    """Revocation wins over acceptance: not delivered; delivery_failed event and dead letter."""
    peer = await sandbox_user(client, "messenger", "43")
    alice = ThirdPartyUser(client, "acme", "alice")
    await alice.publish_keys()
    await outage(client, "messenger", True)
    (message_id,) = await send_texts(alice, peer, ["secret"])
    response = await client.put(
        "/sandbox/v1/consent", json={"user": peer, "consent": []}, headers=admin_headers()
    )
    assert response.status == 200
    await outage(client, "messenger", False)
    (failed,) = await eventually(lambda: events_of(client, "acme", "delivery_failed"))
    assert failed["message_id"] == message_id
    assert failed["reason"] == "recipient_unavailable"
    assert (failed["from"], failed["to"]) == (alice.uri, peer)
    consents = await events_of(client, "acme", "consent")
    assert [(e["user"], e["state"]) for e in consents] == [(peer, "granted"), (peer, "revoked")]
    assert await inbox(client, peer) == []
    store = client.app[STORE]
    row = await store.fetchrow("SELECT reason FROM relay_dead_letters")
    assert row["reason"] == "recipient_unavailable"
    status = await store.fetchrow(
        "SELECT status, payload FROM relay_messages WHERE client_msg_id = $1", message_id
    )
    assert (status["status"], status["payload"]) == ("failed", None)


async def test_past_the_retry_budget_the_provider_is_told(client: Any) -> None:
    peer = await sandbox_user(client, "messenger", "44")
    alice = ThirdPartyUser(client, "acme", "alice")
    await alice.publish_keys()
    await outage(client, "messenger", True)
    (message_id,) = await send_texts(alice, peer, ["lost"])
    (failed,) = await eventually(lambda: events_of(client, "acme", "delivery_failed"))
    assert failed["message_id"] == message_id
    assert failed["reason"] == "retries_exhausted:platform_unavailable"
    attempts = await client.app[STORE].fetchval("SELECT attempts FROM relay_dead_letters")
    assert attempts == 4


async def test_undecryptable_ciphertext_fails_for_good(client: Any) -> None:
    peer = await sandbox_user(client, "messenger", "45")
    alice = ThirdPartyUser(client, "acme", "alice")
    encrypted = {"protocol": "olm.v1", "type": 1, "body": "AAAA", "sender_key": "nope"}
    response = await alice.send(alice.message(peer, encrypted=encrypted))
    assert response.status == 202
    (failed,) = await eventually(lambda: events_of(client, "acme", "delivery_failed"))
    assert failed["reason"] == "undecryptable"


async def test_sandbox_admin_refusals(client: Any) -> None:
    from tests.http.test_messages import TEXT, problem

    body = {"service": "whatsapp", "id": "1", "name": "A"}
    await problem(await client.post("/sandbox/v1/users", json=body), 401, "/problems/unauthorized")
    await sandbox_user(client, "whatsapp", "1")
    response = await client.post("/sandbox/v1/users", json=body, headers=admin_headers())
    await problem(response, 409, "/problems/conflict", "$.id")
    response = await client.post(
        "/sandbox/v1/users", json=body | {"service": "sms"}, headers=admin_headers()
    )
    await problem(response, 422, "/problems/validation", "$.service")
    response = await client.get(
        "/sandbox/v1/inbox", params={"user": "mimi://whatsapp/u/2"}, headers=admin_headers()
    )
    await problem(response, 404, "/problems/not-found", "user")
    response = await client.get("/sandbox/v1/inbox", headers=admin_headers())
    await problem(response, 422, "/problems/validation", "user")
    send = {"from": "mimi://whatsapp/u/1", "to": "mimi://acme/u/nobody", "content": TEXT}
    response = await client.post("/sandbox/v1/send", json=send, headers=admin_headers())
    await problem(response, 404, "/problems/unknown-recipient", "$.to")
    response = await client.post(
        "/sandbox/v1/send", json=send | {"to": "mimi://whatsapp/u/1"}, headers=admin_headers()
    )
    await problem(response, 422, "/problems/validation", "$.to")
    response = await client.post(
        "/sandbox/v1/send", json=send | {"content": {"nestedPart": {}}}, headers=admin_headers()
    )
    await problem(response, 422, "/problems/content-rejected")
    response = await client.put(
        "/sandbox/v1/consent", json={"user": "mimi://whatsapp/u/9", "consent": "all"},
        headers=admin_headers(),
    )  # fmt: skip
    await problem(response, 404, "/problems/not-found", "$.user")
