"""The webhook push under the destination policy: loopback only with the development setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web
from structlog.testing import capture_logs

from gateway.app import create_app
from gateway.service.providers import WebhookTarget
from tests.egress_helpers import with_test_hosts
from tests.http import providers
from tests.http.relay_support import ThirdPartyUser, eventually, pull, sandbox_user
from tests.http.test_events import sandbox_says
from tests.http.test_relay_roundtrip import fast_config
from tests.onboarding_helpers import register_provider


async def pushing_client(
    aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path, *, allow_loopback: bool
) -> tuple[Any, list[bytes]]:
    received: list[bytes] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.read())
        return web.Response(status=204)

    server_app = web.Application()
    server_app.router.add_post("/hook", hook)
    server = await aiohttp_server(server_app)

    url = str(server.make_url("/hook"))

    async def targets(client_id: str) -> WebhookTarget | None:
        return WebhookTarget(url=url, secret="whsec-x") if client_id == "acme" else None

    config = fast_config(tmp_path / "data")
    webhooks = msgspec.structs.replace(config.webhooks, allow_loopback=allow_loopback)
    app = with_test_hosts(
        create_app(
            msgspec.structs.replace(config, webhooks=webhooks), fake_provider_webhooks=targets
        )
    )
    providers.act_as_providers(app)
    client = await aiohttp_client(app)
    await register_provider(app, "acme")  # pushes go only to registered, active providers
    return client, received


async def message_to_acme(client: Any, number: str) -> str:
    peer = await sandbox_user(client, "whatsapp", number)
    alice = ThirdPartyUser(client, "acme", "alice")
    await alice.publish_keys()
    return await sandbox_says(client, peer, alice.uri)


async def test_a_loopback_webhook_is_refused_and_logged_without_the_setting(
    aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path
) -> None:
    client, received = await pushing_client(
        aiohttp_client, aiohttp_server, tmp_path, allow_loopback=False
    )
    with capture_logs() as logs:
        await message_to_acme(client, "4915100000061")

        async def refused() -> list[dict[str, Any]] | None:
            found = [e for e in logs if e["event"] == "webhook_push_refused"]
            return found or None

        entry = (await eventually(refused))[0]
    assert entry["log_level"] == "warning"
    assert entry["client_id"] == "acme"
    assert entry["host"] == "127.0.0.1"
    assert entry["reason"] == "is a loopback address"
    assert received == []
    assert (await pull(client, "acme"))["events"]  # still queued: not acknowledged


async def test_a_loopback_webhook_is_delivered_with_the_setting(
    aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path
) -> None:
    client, received = await pushing_client(
        aiohttp_client, aiohttp_server, tmp_path, allow_loopback=True
    )
    message_id = await message_to_acme(client, "4915100000062")

    async def delivered() -> bool:
        return any(message_id.encode() in body for body in received)

    await eventually(delivered)
