"""The relay's SQL on every storage backend: accept, claim in order, retry, deliver, events."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from gateway.app import create_app
from gateway.config import Config
from tests.http import providers
from tests.http.relay_support import ThirdPartyUser, events_of, eventually, pull, sandbox_user
from tests.http.test_delivery import _n_texts, outage, send_texts
from tests.http.test_events import sandbox_says
from tests.http.test_messages import problem


@pytest.fixture
async def client(backend_config: Config, aiohttp_client: Any) -> Any:
    relay = msgspec.structs.replace(
        backend_config.relay, retry_base_s=0.02, retry_max_s=0.1, poll_interval_s=0.2
    )
    app = create_app(msgspec.structs.replace(backend_config, relay=relay))
    return await aiohttp_client(providers.act_as_providers(app))


async def test_relay_round_trip_on_each_backend(client: Any) -> None:
    peer = await sandbox_user(client, "messenger", "42")
    alice = ThirdPartyUser(client, "acme", "alice")
    await alice.publish_keys()
    await outage(client, "messenger", True)
    ids = await send_texts(alice, peer, ["one", "two", "three"])
    retry = alice.message(peer, id=ids[0], encrypted={"protocol": "olm.v1", "type": 1,
                          "body": "AAAA", "sender_key": "k"})  # fmt: skip
    await problem(await alice.send(retry), 409, "/problems/idempotency-conflict", "$.id")
    await outage(client, "messenger", False)
    assert await eventually(lambda: _n_texts(client, peer, 3)) == ["one", "two", "three"]
    receipts = await eventually(lambda: _n_events(client, "receipt", 3))
    assert sorted(r["message_id"] for r in receipts) == sorted(ids)
    reply = await sandbox_says(client, peer, alice.uri)
    page = await pull(client, "acme")
    assert reply in [e.get("id") for e in page["events"]]
    response = await client.post(
        "/v1/events/ack", json={"cursor": page["next"]}, headers=alice.headers
    )
    assert response.status == 200
    assert (await pull(client, "acme"))["events"] == []


async def _n_events(client: Any, type_: str, n: int) -> list[dict[str, Any]] | None:
    found = await events_of(client, "acme", type_)
    return found if len(found) >= n else None
