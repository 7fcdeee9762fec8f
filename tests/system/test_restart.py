"""A gateway process killed with undelivered messages: a new process delivers them, once each."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import msgspec

from gateway.crypto import OlmParty
from gateway.http.app_keys import CONFIG
from tests.conftest import ADMIN_TOKEN, REPO, admin_headers
from tests.http.relay_support import eventually
from tests.onboarding_helpers import onboard
from tests.system.test_serve import free_port, wait_until_up

PEER = "mimi://whatsapp/u/4915112345678"


class LiveClient:
    """Enough of aiohttp's TestClient for the onboarding helpers, against a real process."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.app = {CONFIG: SimpleNamespace(base_url=base_url)}

    async def post(self, path: str, **kw: Any) -> aiohttp.ClientResponse:
        return await self.session.post(path, **kw)

    async def get(self, path: str, **kw: Any) -> aiohttp.ClientResponse:
        return await self.session.get(path, **kw)

    async def put(self, path: str, **kw: Any) -> aiohttp.ClientResponse:
        return await self.session.put(path, **kw)


def start(data_dir: Path, port: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env |= {
        "PYTHONPATH": str(REPO),
        "GATEWAY_PORT": str(port),
        "GATEWAY_DATA_DIR": str(data_dir),
        "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN,
        "GATEWAY_LOG_FORMAT": "json",
        "GATEWAY_RELAY__RETRY_BASE_S": "0.05",
        "GATEWAY_RELAY__RETRY_MAX_S": "0.2",
        "GATEWAY_RELAY__MAX_ATTEMPTS": "1000",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve"],
        cwd=data_dir.parent, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    wait_until_up(f"http://127.0.0.1:{port}/readyz")
    return proc


async def inbox(client: LiveClient) -> list[dict[str, Any]]:
    response = await client.get(
        "/sandbox/v1/inbox", params={"user": PEER}, headers=admin_headers()
    )
    assert response.status == 200
    return list((await response.json())["items"])


def texts(items: list[dict[str, Any]]) -> list[str]:
    value = [i["payload"]["entry"][0]["changes"][0]["value"] for i in items]
    return [v["messages"][0]["text"]["body"] for v in value]


async def test_undelivered_messages_survive_a_killed_process(tmp_path: Path) -> None:
    data_dir, port = tmp_path / "var", free_port()
    base = f"http://127.0.0.1:{port}"
    proc = await asyncio.to_thread(start, data_dir, port)
    try:
        async with aiohttp.ClientSession(base_url=base) as session:
            client = LiveClient(session, base)
            provider = await onboard(client)
            response = await client.post(
                "/sandbox/v1/users", headers=admin_headers(),
                json={"service": "whatsapp", "id": "4915112345678", "name": "Sam",
                      "consent": [provider.client_id]},
            )  # fmt: skip
            assert response.status == 201
            alice = OlmParty()
            response = await client.put(
                "/v1/users/alice/keys", headers=provider.headers(),
                json=msgspec.to_builtins(alice.key_bundle(3, fallback=True)),
            )  # fmt: skip
            assert response.status == 200, await response.text()
            response = await client.get(
                "/v1/keys", params={"user": PEER}, headers=provider.headers()
            )
            bundle = await response.json()
            await client.post(
                "/sandbox/v1/outage", json={"service": "whatsapp", "down": True},
                headers=admin_headers(),
            )  # fmt: skip
            for n, word in enumerate(["one", "two", "three"]):
                native = msgspec.json.encode({"type": "text", "text": {"body": word}})
                otk = bundle["one_time_key"]["key"]
                enc = alice.encrypt(bundle["identity_key"], native, one_time_key=otk)
                body = {
                    "id": f"m{n}", "from": f"mimi://{provider.client_id}/u/alice", "to": PEER,
                    "sent_at": int(time.time() * 1000), "encrypted": enc.to_wire(),
                }  # fmt: skip
                response = await client.post("/v1/messages", json=body, headers=provider.headers())
                assert response.status == 202, await response.text()
            assert await inbox(client) == []
    finally:
        proc.send_signal(signal.SIGKILL)  # no graceful shutdown: only what is on disk counts
        proc.wait(timeout=20)

    proc = await asyncio.to_thread(start, data_dir, port)  # the outage was in the dead process
    try:
        async with aiohttp.ClientSession(base_url=base) as session:
            client = LiveClient(session, base)

            async def all_three() -> list[dict[str, Any]] | None:
                items = await inbox(client)
                return items if len(items) >= 3 else None

            items = await eventually(all_three, within_s=15)
            assert texts(items) == ["one", "two", "three"]
            await asyncio.sleep(0.5)  # anything delivered twice would show up by now
            assert len(await inbox(client)) == 3
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0
