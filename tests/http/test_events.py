"""Events to providers: long-poll pull, ack, WebSocket; each provider's queue apart."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
from aiohttp import WSMsgType

from gateway.app import create_app
from gateway.config import Config
from tests.conftest import admin_headers
from tests.http import providers
from tests.http.providers import provider_headers
from tests.http.relay_support import ThirdPartyUser, pull, sandbox_user
from tests.http.test_messages import TEXT, problem


def fast_backend_config(backend_config: Config) -> Config:
    """`backend_config` with deliveries retried within tens of milliseconds."""
    relay = msgspec.structs.replace(
        backend_config.relay, retry_base_s=0.02, retry_max_s=0.1, poll_interval_s=0.2
    )
    return msgspec.structs.replace(backend_config, relay=relay)


@pytest.fixture
async def rclient(backend_config: Config, aiohttp_client: Any) -> Any:
    """A relay client acting as providers, once per storage backend."""
    app = create_app(fast_backend_config(backend_config))
    return await aiohttp_client(providers.act_as_providers(app))


async def sandbox_says(client: Any, peer: str, to: str) -> str:
    response = await client.post(
        "/sandbox/v1/send", json={"from": peer, "to": to, "content": TEXT},
        headers=admin_headers(),
    )  # fmt: skip
    assert response.status == 202, await response.text()
    return str((await response.json())["id"])


async def two_providers(client: Any) -> tuple[str, ThirdPartyUser, ThirdPartyUser]:
    peer = await sandbox_user(client, "messenger", "777", consent="all")
    alice = ThirdPartyUser(client, "acme", "alice")
    bob = ThirdPartyUser(client, "globex", "bob")
    for user in (alice, bob):
        await user.publish_keys()
    return peer, alice, bob


async def test_pull_ack_and_redelivery_until_acked(rclient: Any) -> None:
    client = rclient
    peer, alice, _bob = await two_providers(client)
    first = await sandbox_says(client, peer, alice.uri)
    second = await sandbox_says(client, peer, alice.uri)
    page = await pull(client, "acme", limit=1)
    assert [e["id"] for e in page["events"]] == [first]
    assert page["events"][0]["type"] == "message"
    page2 = await pull(client, "acme", after=page["next"])
    assert [e["id"] for e in page2["events"]] == [second]
    # Not acknowledged: a pull from the start gives both again (at least once).
    assert len((await pull(client, "acme"))["events"]) == 2
    assert (await pull(client, "globex"))["events"] == []  # another provider's queue
    response = await client.post(
        "/v1/events/ack", json={"cursor": page["next"]}, headers=alice.headers
    )
    assert response.status == 200
    assert [e["id"] for e in (await pull(client, "acme"))["events"]] == [second]
    await client.post("/v1/events/ack", json={"cursor": page2["next"]}, headers=alice.headers)
    empty = await pull(client, "acme")
    assert empty == {"events": [], "next": page2["next"]}


async def test_long_poll_wakes_on_a_new_event(rclient: Any) -> None:
    client = rclient
    peer, alice, _ = await two_providers(client)
    waiting = asyncio.ensure_future(pull(client, "acme", wait=5))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    started = asyncio.get_running_loop().time()
    message_id = await sandbox_says(client, peer, alice.uri)
    page = await waiting
    assert [e["id"] for e in page["events"]] == [message_id]
    assert asyncio.get_running_loop().time() - started < 1.0


async def test_a_slow_consumer_does_not_hold_up_another(rclient: Any) -> None:
    client = rclient
    peer, alice, bob = await two_providers(client)
    for _ in range(5):
        await sandbox_says(client, peer, alice.uri)  # acme never consumes
    message_id = await sandbox_says(client, peer, bob.uri)
    assert [e["id"] for e in (await pull(client, "globex"))["events"]] == [message_id]


async def test_malformed_cursors_and_parameters(rclient: Any) -> None:
    client = rclient
    headers = provider_headers("acme")
    for params, field in (
        ({"after": "abc"}, "after"),
        ({"after": "-1"}, "after"),
        ({"after": "1" * 40}, "after"),
    ):
        response = await client.get("/v1/events", params=params, headers=headers)
        await problem(response, 400, "/problems/invalid-cursor", field)
    for params, field in (({"limit": "x"}, "limit"), ({"wait": "99"}, "wait")):
        response = await client.get("/v1/events", params=params, headers=headers)
        await problem(response, 422, "/problems/validation", field)
    for cursor in ("zz", ""):
        response = await client.post("/v1/events/ack", json={"cursor": cursor}, headers=headers)
        status, type_ = (400, "/problems/invalid-cursor") if cursor else (
            422, "/problems/validation")  # fmt: skip
        await problem(response, status, type_, "$.cursor")
    response = await client.post("/v1/events/ack", json={"cursor": "999"}, headers=headers)
    await problem(response, 400, "/problems/invalid-cursor", "$.cursor")
    response = await client.get("/v1/events", headers=provider_headers("acme", ["messages"]))
    await problem(response, 403, "/problems/insufficient-scope")
    await problem(await client.get("/v1/events"), 401, "/problems/unauthorized")


async def test_websocket_streams_and_acks(rclient: Any) -> None:
    client = rclient
    peer, alice, _ = await two_providers(client)
    early = await sandbox_says(client, peer, alice.uri)
    async with client.ws_connect("/v1/events/ws", headers=alice.headers) as ws:
        page = await ws.receive_json(timeout=5)
        assert [e["id"] for e in page["events"]] == [early]
        late = await sandbox_says(client, peer, alice.uri)
        page2 = await ws.receive_json(timeout=5)
        assert [e["id"] for e in page2["events"]] == [late]
        await ws.send_json({"ack": page2["next"]})
        await ws.send_str("not json")
        error = await ws.receive_json(timeout=5)
        assert "error" in error
    assert (await pull(client, "acme"))["events"] == []
    response = await client.get("/v1/events/ws", headers=provider_headers("acme", ["keys"]))
    await problem(response, 403, "/problems/insufficient-scope")


async def test_websocket_closes_cleanly(rclient: Any) -> None:
    client = rclient
    async with client.ws_connect("/v1/events/ws", headers=provider_headers("acme")) as ws:
        await ws.close()
        msg = await ws.receive()
        assert msg.type in (WSMsgType.CLOSED, WSMsgType.CLOSE)


async def test_idle_sockets_hold_no_task_and_wake_on_an_event(rclient: Any) -> None:
    client = rclient
    peer, alice, _ = await two_providers(client)
    await asyncio.sleep(0.2)  # the setup's own background work settles
    before = asyncio.all_tasks()
    served = len(client.server.runner.server.connections)
    sockets = [await client.ws_connect("/v1/events/ws", headers=alice.headers) for _ in range(4)]
    await asyncio.sleep(0.2)  # each has looked for queued events and found none
    new = [t.get_coro().__qualname__ for t in asyncio.all_tasks() - before]  # type: ignore[union-attr]
    # No task per idle socket: neither aiohttp's (its connection's reader, the request
    # handler) nor ours (a page sender); and aiohttp no longer counts them as its connections.
    assert new == []
    assert len(client.server.runner.server.connections) <= served
    sent = await sandbox_says(client, peer, alice.uri)
    for ws in sockets:  # a commit that appends for the provider wakes every idle socket
        page = await ws.receive_json(timeout=5)
        assert [e["id"] for e in page["events"]] == [sent]
    for ws in sockets:
        await ws.close()
