"""Open event streams end with a suspension or an expired token (issue #16 item 4)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp import WSCloseCode, WSMsgType

from gateway.app import create_app
from gateway.config import BucketConfig, Config
from gateway.http.app_keys import STORE
from gateway.service.event_streams import (
    CLOSE_AUTH_FAILED,
    CLOSE_SUSPENDED,
    CLOSE_TOKEN_EXPIRED,
    MAX_SOCKETS,
)
from tests.conftest import admin_headers, make_config
from tests.http import providers
from tests.http.providers import provider_headers
from tests.http.test_events import fast_backend_config
from tests.http.test_messages import problem
from tests.onboarding_helpers import register_provider


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def suspend(client: Any, client_id: str) -> None:
    response = await client.post(
        f"/admin/v1/providers/{client_id}/suspend", json={"reason": "abuse"},
        headers=admin_headers(),
    )  # fmt: skip
    assert response.status == 200, await response.text()


def with_auth(config: Config, **auth: Any) -> Config:
    return msgspec.structs.replace(config, auth=msgspec.structs.replace(config.auth, **auth))


@pytest.fixture
async def sclient(backend_config: Config, aiohttp_client: Any) -> Any:
    app = create_app(fast_backend_config(backend_config))
    return await aiohttp_client(providers.act_as_providers(app))


async def test_suspension_ends_a_waiting_long_poll(sclient: Any) -> None:
    token = await register_provider(sclient.app, "acme")
    waiting = asyncio.ensure_future(
        sclient.get("/v1/events", params={"wait": "20"}, headers=bearer(token))
    )
    await asyncio.sleep(0.2)
    assert not waiting.done()
    started = asyncio.get_running_loop().time()
    await suspend(sclient, "acme")
    response = await asyncio.wait_for(waiting, 5)
    assert asyncio.get_running_loop().time() - started < 2.0
    await problem(response, 403, "/problems/provider-suspended")


async def test_suspension_closes_the_providers_sockets_only(sclient: Any) -> None:
    acme = await register_provider(sclient.app, "acme")
    globex = await register_provider(sclient.app, "globex")
    async with (
        sclient.ws_connect("/v1/events/ws", headers=bearer(acme)) as ws,
        sclient.ws_connect("/v1/events/ws", headers=bearer(globex)) as other,
    ):
        await suspend(sclient, "acme")
        msg = await ws.receive(timeout=5)
        assert msg.type == WSMsgType.CLOSE
        assert msg.data == CLOSE_SUSPENDED
        assert msg.extra == "provider suspended"
        assert not other.closed
        # New requests of the suspended provider are refused at the door.
        response = await sclient.get("/v1/events", headers=bearer(acme))
        await problem(response, 403, "/problems/provider-suspended")


async def test_a_socket_closes_when_its_token_expires(
    backend_config: Config, aiohttp_client: Any
) -> None:
    app = create_app(with_auth(backend_config, access_token_ttl_s=1))
    client = await aiohttp_client(app)
    token = await register_provider(app, "acme")
    async with client.ws_connect("/v1/events/ws", headers=bearer(token)) as ws:
        msg = await ws.receive(timeout=5)
        assert msg.type == WSMsgType.CLOSE
        assert msg.data == CLOSE_TOKEN_EXPIRED


async def test_reauthentication_keeps_a_socket_open(
    backend_config: Config, aiohttp_client: Any
) -> None:
    ttl = 4  # whole seconds: a token expires between ttl - 1 and ttl after it is issued
    app = create_app(with_auth(backend_config, access_token_ttl_s=ttl))
    client = await aiohttp_client(app)
    first = await register_provider(app, "acme")
    issued = time.monotonic()
    async with client.ws_connect("/v1/events/ws", headers=bearer(first)) as ws:
        await asyncio.sleep(2.0)  # the second token outlives the first by 1 s at least
        await ws.send_json({"auth": await register_provider(app, "acme")})
        answer = await ws.receive_json(timeout=5)
        assert answer["auth"] == "ok" and isinstance(answer["expires_at"], int)
        await asyncio.sleep(max(0.0, issued + ttl + 0.3 - time.monotonic()))
        assert not ws.closed  # the first token has expired by now, the second has not
        await ws.send_json({"auth": "not-a-token"})
        error = await ws.receive_json(timeout=5)
        assert error["type"] == "/problems/invalid-token"
        msg = await ws.receive(timeout=ttl + 5)  # the second token expires in turn
        assert msg.type == WSMsgType.CLOSE
        assert msg.data == CLOSE_TOKEN_EXPIRED


async def test_reauthentication_as_another_provider_closes_the_socket(sclient: Any) -> None:
    acme = await register_provider(sclient.app, "acme")
    globex = await register_provider(sclient.app, "globex")
    async with sclient.ws_connect("/v1/events/ws", headers=bearer(acme)) as ws:
        await ws.send_json({"auth": globex})
        msg = await ws.receive(timeout=5)
        assert msg.type == WSMsgType.CLOSE
        assert msg.data == CLOSE_AUTH_FAILED


async def test_socket_acks_are_rate_limited_and_audited(
    backend_config: Config, aiohttp_client: Any
) -> None:
    limits = msgspec.structs.replace(
        backend_config.limits, events=BucketConfig(rate_per_s=0.01, burst=3)
    )
    app = create_app(msgspec.structs.replace(backend_config, limits=limits))
    client = await aiohttp_client(app)
    token = await register_provider(app, "acme")  # the upgrade spends one token
    async with client.ws_connect("/v1/events/ws", headers=bearer(token)) as ws:
        await ws.send_json({"ack": "0"})
        await ws.send_json({"ack": "5"})  # past the newest event
        error = await ws.receive_json(timeout=5)
        assert error["type"] == "/problems/invalid-cursor"
        await ws.send_json({"ack": "0"})
        limited = await ws.receive_json(timeout=5)
        assert limited["type"] == "/problems/rate-limited"
        assert limited["retry_after"] >= 1
    rows = await app[STORE].fetch(
        "SELECT status, client_id FROM audit_records WHERE action = 'events.ack' ORDER BY seq"
    )
    assert [(r["status"], r["client_id"]) for r in rows] == [(200, "acme"), (400, "acme")]


async def test_open_sockets_per_provider_are_capped(sclient: Any) -> None:
    token = await register_provider(sclient.app, "acme")
    sockets = [
        await sclient.ws_connect("/v1/events/ws", headers=bearer(token))
        for _ in range(MAX_SOCKETS)
    ]
    try:
        response = await sclient.get("/v1/events/ws", headers=bearer(token))
        await problem(response, 409, "/problems/conflict")
        # Other providers are not counted against acme's cap.
        other = await sclient.ws_connect("/v1/events/ws", headers=provider_headers("globex"))
        await other.close()
        await sockets.pop().close()
        again = await sclient.ws_connect("/v1/events/ws", headers=bearer(token))
        sockets.append(again)
    finally:
        for ws in sockets:
            await ws.close()


async def test_suspension_on_one_replica_closes_a_socket_on_another(
    postgres_url: str, aiohttp_client: Any, tmp_path: Path
) -> None:
    def replica(name: str) -> Config:
        config = make_config(tmp_path / "data")  # shared: token keys must be the same
        storage = msgspec.structs.replace(config.storage, database_url=postgres_url)
        server = msgspec.structs.replace(config.server, replica_id=name)
        audit = msgspec.structs.replace(config.audit, chain_id=name)
        return msgspec.structs.replace(config, storage=storage, server=server, audit=audit)

    a = await aiohttp_client(create_app(replica("a")))
    b = await aiohttp_client(create_app(replica("b")))
    token = await register_provider(b.app, "acme")
    async with b.ws_connect("/v1/events/ws", headers=bearer(token)) as ws:
        waiting = asyncio.ensure_future(
            b.get("/v1/events", params={"wait": "20"}, headers=bearer(token))
        )
        await asyncio.sleep(0.2)
        await suspend(a, "acme")
        msg = await ws.receive(timeout=5)
        assert msg.type == WSMsgType.CLOSE
        assert msg.data == CLOSE_SUSPENDED
        await problem(await asyncio.wait_for(waiting, 5), 403, "/problems/provider-suspended")


async def test_shutdown_closes_sockets_going_away(sclient: Any) -> None:
    token = await register_provider(sclient.app, "acme")
    async with sclient.ws_connect("/v1/events/ws", headers=bearer(token)) as ws:
        stopping = asyncio.ensure_future(sclient.server.close())
        msg = await ws.receive(timeout=5)
        assert msg.type == WSMsgType.CLOSE
        assert msg.data == WSCloseCode.GOING_AWAY
        assert msg.extra == "server shutting down"
        await asyncio.wait_for(stopping, 5)  # the server did not wait out the close timeout
