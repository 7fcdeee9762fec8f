"""Backpressure: past the outbox bound or a provider's event backlog, 503 with Retry-After."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.app import create_app
from tests.conftest import admin_headers
from tests.http import providers
from tests.http.relay_support import ThirdPartyUser, eventually, sandbox_user
from tests.http.test_delivery import outage, send_texts
from tests.http.test_events import sandbox_says
from tests.http.test_messages import TEXT, problem
from tests.http.test_relay_roundtrip import fast_config


async def overloaded(response: Any) -> None:
    await problem(response, 503, "/problems/overloaded")
    assert response.headers["Retry-After"] == "5"


async def test_a_full_outbox_refuses_new_messages(aiohttp_client: Any, tmp_path: Path) -> None:
    app = create_app(fast_config(tmp_path / "data", max_outbox=2, max_attempts=100))
    client = await aiohttp_client(providers.act_as_providers(app))
    peer = await sandbox_user(client, "messenger", "1")
    alice = ThirdPartyUser(client, "acme", "alice")
    await alice.publish_keys()
    await outage(client, "messenger", True)
    await send_texts(alice, peer, ["one", "two"])
    body = alice.message(peer, encrypted=await alice.encrypt_for(peer, {"text": "three"}))
    await overloaded(await alice.send(body))
    await outage(client, "messenger", False)

    async def accepted_again() -> bool:
        return (await alice.send(body)).status == 202

    await eventually(accepted_again)


async def test_an_unread_event_backlog_refuses_that_provider_only(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    app = create_app(fast_config(tmp_path / "data", max_provider_backlog=1))
    client = await aiohttp_client(providers.act_as_providers(app))
    peer = await sandbox_user(client, "whatsapp", "4915100000001", consent="all")
    alice = ThirdPartyUser(client, "acme", "alice")
    bob = ThirdPartyUser(client, "globex", "bob")
    for user in (alice, bob):
        await user.publish_keys()
    await sandbox_says(client, peer, alice.uri)  # acme does not read it: the bound is reached
    response = await client.post(
        "/sandbox/v1/send", json={"from": peer, "to": alice.uri, "content": TEXT},
        headers=admin_headers(),
    )  # fmt: skip
    await overloaded(response)
    body = alice.message(peer, encrypted=await alice.encrypt_for(peer, {"type": "text",
                         "text": {"body": "hi"}}))  # fmt: skip
    await overloaded(await alice.send(body))
    await sandbox_says(client, peer, bob.uri)  # globex still gets its events
