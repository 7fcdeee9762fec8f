"""Webhook push to a provider: signed, retried with backoff while down, acked by a 2xx."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from typing import Any

import pytest
from aiohttp import web

from gateway.app import create_app
from gateway.config import Config
from gateway.http.app_keys import STORE
from gateway.service.providers import WebhookTarget
from gateway.store.events import count_backlog
from tests.conftest import admin_headers
from tests.http import providers
from tests.http.group_support import GroupUser
from tests.http.relay_support import ThirdPartyUser, eventually, pull, sandbox_user
from tests.http.test_events import fast_backend_config, sandbox_says
from tests.onboarding_helpers import register_provider

SECRET = "whsec-test-0123456789"


class FakeProvider:
    """A provider's webhook endpoint that checks signatures and can be taken down."""

    def __init__(self) -> None:
        self.up = False
        self.batches: list[dict[str, Any]] = []
        self.refused = 0
        self.held = 0
        self.release: asyncio.Event | None = None  # set: requests wait for it

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.release is not None:
            self.held += 1
            await self.release.wait()
        header = request.headers["X-Interop-Signature"]
        parts = dict(item.split("=", 1) for item in header.split(","))
        mac = hmac.new(SECRET.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256)
        assert hmac.compare_digest(parts["v1"], mac.hexdigest())
        if not self.up:
            self.refused += 1
            return web.Response(status=503)
        self.batches.append(json.loads(body))
        return web.Response(status=204)

    def message_ids(self) -> list[str]:
        return [e["id"] for b in self.batches for e in b["events"] if e["type"] == "message"]


@pytest.fixture
async def setup(backend_config: Config, aiohttp_client: Any, aiohttp_server: Any) -> Any:
    fake = FakeProvider()
    server_app = web.Application()
    server_app.router.add_post("/hook", fake.handle)
    server = await aiohttp_server(server_app)

    async def targets(client_id: str) -> WebhookTarget | None:
        if client_id != "acme":
            return None
        return WebhookTarget(url=str(server.make_url("/hook")), secret=SECRET)

    app = create_app(fast_backend_config(backend_config), fake_provider_webhooks=targets)
    providers.act_as_providers(app)
    client = await aiohttp_client(app)
    await register_provider(app, "acme")  # a provider with a webhook is registered
    return client, fake


async def test_events_wait_while_the_webhook_is_down_then_arrive_once(setup: Any) -> None:
    client, fake = setup
    peer = await sandbox_user(client, "whatsapp", "4915100000042")
    alice = ThirdPartyUser(client, "acme", "alice")
    await alice.publish_keys()
    first = await sandbox_says(client, peer, alice.uri)

    async def refused_twice() -> bool:
        return fake.refused >= 2

    await eventually(refused_twice)
    assert len((await pull(client, "acme"))["events"]) >= 1  # still queued: not acked
    fake.up = True
    second = await sandbox_says(client, peer, alice.uri)

    async def both() -> list[str] | None:
        ids = fake.message_ids()
        return ids if len(ids) >= 2 else None

    assert await eventually(both) == [first, second]
    txn_ids = [b["txn_id"] for b in fake.batches]
    assert len(txn_ids) == len(set(txn_ids))

    async def drained() -> bool:
        return (await pull(client, "acme"))["events"] == []

    await eventually(drained)  # acknowledged by the 2xx


async def test_a_provider_without_webhook_keeps_pulling(setup: Any) -> None:
    client, fake = setup
    fake.up = True
    peer = await sandbox_user(client, "whatsapp", "4915100000043", consent="all")
    bob = ThirdPartyUser(client, "globex", "bob")
    await bob.publish_keys()
    message_id = await sandbox_says(client, peer, bob.uri)
    page = await pull(client, "globex")
    assert [e["id"] for e in page["events"]] == [message_id]
    assert fake.batches == []


async def test_suspension_stops_pushes_until_resumed(setup: Any) -> None:
    client, fake = setup
    fake.up = True
    peer = await sandbox_user(client, "whatsapp", "4915100000044")
    alice = ThirdPartyUser(client, "acme", "alice")
    await alice.publish_keys()
    fake.release = asyncio.Event()
    first = await sandbox_says(client, peer, alice.uri)

    async def in_flight() -> bool:
        return fake.held >= 1

    await eventually(in_flight)
    await admin_post(client, "/admin/v1/providers/acme/suspend")
    second = await sandbox_says(client, peer, alice.uri)
    fake.release.set()  # the push under way was cancelled: its 2xx acknowledges nothing
    await asyncio.sleep(0.8)  # several poll intervals
    assert fake.held == 1  # no push while suspended
    assert await count_backlog(client.app[STORE], "acme") == 2
    await admin_post(client, "/admin/v1/providers/acme/resume")

    async def both() -> list[str] | None:
        ids = fake.message_ids()
        return ids if first in ids and second in ids else None

    await eventually(both)


async def admin_post(client: Any, path: str) -> None:
    response = await client.post(path, json={"reason": "test"}, headers=admin_headers())
    assert response.status == 200, await response.text()


async def test_group_events_are_pushed_like_the_others(setup: Any) -> None:
    client, fake = setup
    fake.up = True
    alice = GroupUser(client, "acme", "alice")
    bob = GroupUser(client, "globex", "bob")
    for user in (alice, bob):
        await user.publish_keys()
    created = await bob.create([alice.uri])
    assert created.status == 201, await created.text()
    group = (await created.json())["group"]
    shared, _ = await bob.share(group, 0, [alice.uri])
    assert shared.status == 202
    assert (await bob.send_group(group, 0, {"type": "text", "text": {"body": "hi"}})).status == 202

    async def pushed() -> list[str] | None:
        types = [e["type"] for b in fake.batches for e in b["events"]]
        return types if len(types) >= 3 else None

    assert await eventually(pushed) == ["group_membership", "room_key", "group_message"]
    # Over the WebSocket too, for a provider without a webhook (globex's own membership event).
    async with client.ws_connect("/v1/events/ws", headers=bob.headers) as ws:
        page = await ws.receive_json(timeout=5)
        assert [e["type"] for e in page["events"]] == ["group_membership"]
