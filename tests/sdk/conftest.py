"""A real gateway on a real port, and SDK clients onboarded through its API."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web

from gateway.app import create_app
from gateway.config import Config
from gateway.sdk import InteropClient, SigningKey, request_interop, request_status
from tests.conftest import admin_headers, make_config


class Gateway(msgspec.Struct, kw_only=True):
    base: str
    app: web.Application
    config: Config
    http: aiohttp.ClientSession

    async def admin(self, method: str, path: str, **kw: Any) -> Any:
        async with self.http.request(
            method, self.base + path, headers=admin_headers(), **kw
        ) as response:
            body = await response.json()
            assert response.status < 300, body
            return body

    async def sandbox_user(self, native_id: str, consent: list[str], name: str = "Wanda") -> str:
        body = {"service": "whatsapp", "id": native_id, "name": name, "consent": consent}
        return str((await self.admin("POST", "/sandbox/v1/users", json=body))["uri"])

    async def inbox(self, uri: str) -> list[dict[str, Any]]:
        answer = await self.admin("GET", "/sandbox/v1/inbox", params={"user": uri})
        return list(answer["items"])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    async for served in _serve(make_config(tmp_path / "data")):
        yield served


@pytest.fixture
async def backend_gateway(backend_config: Config) -> AsyncIterator[Gateway]:
    """`gateway`, once per storage backend (see tests.conftest.store_url)."""
    async for served in _serve(backend_config):
        yield served


async def _serve(config: Config) -> AsyncIterator[Gateway]:
    port = _free_port()
    config = msgspec.structs.replace(
        config, server=msgspec.structs.replace(config.server, port=port)
    )
    app = create_app(config)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    async with aiohttp.ClientSession() as http:
        yield Gateway(base=config.base_url, app=app, config=config, http=http)
    await runner.cleanup()


SdkFactory = Callable[..., Awaitable[InteropClient]]


@pytest.fixture
async def onboard_sdk(gateway: Gateway, tmp_path: Path) -> AsyncIterator[SdkFactory]:
    """Onboard a provider through the API and return its SDK client."""
    async for factory in _onboarding(gateway, tmp_path):
        yield factory


@pytest.fixture
async def backend_onboard_sdk(
    backend_gateway: Gateway, tmp_path: Path
) -> AsyncIterator[SdkFactory]:
    """`onboard_sdk` against `backend_gateway`."""
    async for factory in _onboarding(backend_gateway, tmp_path):
        yield factory


async def _onboarding(gateway: Gateway, tmp_path: Path) -> AsyncIterator[SdkFactory]:
    made: list[InteropClient] = []

    async def factory(
        name: str = "acme", *, key: SigningKey | None = None, client_id: str | None = None
    ) -> InteropClient:
        key = key or SigningKey.generate()
        if client_id is None:
            created = await request_interop(
                gateway.http, gateway.base, organisation=f"{name} Ltd",
                contact_email=f"interop@{name}.example", key=key,
                services=["whatsapp", "messenger", "instagram"], functionalities=FUNCTIONALITIES,
            )  # fmt: skip
            await gateway.admin(
                "POST",
                f"/admin/v1/interop-requests/{created['id']}/decision",
                json={"decision": "approve", "reason": "test"},
            )
            status = await request_status(
                gateway.http, gateway.base, created["id"], created["status_token"]
            )
            client_id = status["client_id"]
        sdk = InteropClient(
            gateway.base, client_id, key, tmp_path / f"{name}-sdk.db", PICKLE_KEY,
            session=gateway.http,
        )  # fmt: skip
        made.append(sdk)
        return sdk

    yield factory
    for sdk in made:
        sdk.state.close()


PICKLE_KEY = os.urandom(32)
FUNCTIONALITIES = ["text", "images", "files", "reactions", "replies", "receipts", "typing",
                   "group_text", "group_files"]  # fmt: skip
