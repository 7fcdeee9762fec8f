"""The sandbox platforms as a process of their own (`dma-gateway sandbox serve`) and a gateway
run with `platforms = http`: real processes, the `http` connector and its webhooks for real."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import ADMIN_TOKEN, REPO, admin_headers
from tests.http.relay_support import ThirdPartyUser, eventually
from tests.onboarding_helpers import OnboardedProvider, onboard
from tests.system.test_restart import LiveClient
from tests.system.test_serve import free_port, wait_until_up

SECRET = "standalone-app-secret"
WA = "mimi://whatsapp/u/4915112345678"
IG = "mimi://instagram/u/17841400000000001"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return env | {
        "PYTHONPATH": str(REPO), "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN,
        "GATEWAY_LOG_FORMAT": "json", "GATEWAY_HTTP_PLATFORM__APP_SECRET": SECRET,
        "GATEWAY_LIMITS__ENABLED": "false",
    } | extra  # fmt: skip


def _spawn(args: list[str], env: dict[str, str], cwd: Path, ready: str) -> subprocess.Popen[str]:
    cwd.mkdir(parents=True, exist_ok=True)
    with (cwd / f"{args[0]}.log").open("a") as log:  # kept for a failing test's report
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", *args], cwd=cwd, env=env,
            stdout=log, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    try:
        wait_until_up(ready)
    except AssertionError:
        proc.kill()
        raise
    return proc


@dataclass
class Topology:
    """A gateway and a standalone sandbox, each restartable on its own port and data dir."""

    root: Path
    gateway_port: int
    sandbox_port: int
    gateway: subprocess.Popen[str] | None = None
    sandbox: subprocess.Popen[str] | None = None

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def sandbox_url(self) -> str:
        return f"http://127.0.0.1:{self.sandbox_port}"

    def start_gateway(self) -> None:
        env = _env(
            GATEWAY_PORT=str(self.gateway_port), GATEWAY_DATA_DIR=str(self.root / "gateway"),
            GATEWAY_PLATFORMS="http", GATEWAY_HTTP_PLATFORM__SANDBOX_URL=self.sandbox_url,
            GATEWAY_HTTP_PLATFORM__TIMEOUT_S="2", GATEWAY_RELAY__RETRY_BASE_S="0.05",
            GATEWAY_RELAY__RETRY_MAX_S="0.2", GATEWAY_RELAY__MAX_ATTEMPTS="1000",
        )  # fmt: skip
        self.gateway = _spawn(["serve"], env, self.root, f"{self.gateway_url}/readyz")

    def start_sandbox(self) -> None:
        args = [
            "sandbox", "serve", "--port", str(self.sandbox_port), "--gateway", self.gateway_url,
            "--data-dir", str(self.root / "sandbox"),
        ]  # fmt: skip
        self.sandbox = _spawn(args, _env(), self.root, f"{self.sandbox_url}/readyz")

    @staticmethod
    def kill(proc: subprocess.Popen[str] | None) -> None:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)  # no graceful shutdown: only what is on disk counts
            proc.wait(timeout=20)


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[Topology]:
    topo = Topology(tmp_path, free_port(), free_port())
    topo.start_gateway()
    topo.start_sandbox()
    try:
        yield topo
    finally:
        Topology.kill(topo.sandbox)
        Topology.kill(topo.gateway)


class LiveUser(ThirdPartyUser):
    """A provider's user, authenticated with the provider's real access token."""

    def __init__(self, client: Any, provider: OnboardedProvider, local: str) -> None:
        super().__init__(client, provider.client_id, local)
        self.provider = provider

    @property
    def headers(self) -> dict[str, str]:
        return self.provider.headers()


@dataclass
class Sides:
    gateway: LiveClient
    sandbox: LiveClient
    provider: OnboardedProvider
    alice: LiveUser


@pytest.fixture
async def sides(topology: Topology) -> AsyncIterator[Sides]:
    async with (
        aiohttp.ClientSession(base_url=topology.gateway_url) as gw,
        aiohttp.ClientSession(base_url=topology.sandbox_url) as sb,
    ):
        gateway = LiveClient(gw, topology.gateway_url)
        provider = await onboard(gateway)
        alice = LiveUser(gateway, provider, "alice")
        await alice.publish_keys(10)
        yield Sides(gateway, LiveClient(sb, topology.sandbox_url), provider, alice)


async def create_user(sandbox: LiveClient, uri: str, consent: list[str]) -> None:
    service, _, native_id = uri.removeprefix("mimi://").partition("/u/")
    response = await sandbox.post(
        "/sandbox/v1/users", headers=admin_headers(),
        json={"service": service, "id": native_id, "name": "Sam", "consent": consent},
    )  # fmt: skip
    assert response.status == 201, await response.text()


async def inbox(sandbox: LiveClient, uri: str) -> list[dict[str, Any]]:
    response = await sandbox.get(
        "/sandbox/v1/inbox", params={"user": uri}, headers=admin_headers()
    )
    assert response.status == 200, await response.text()
    return list((await response.json())["items"])


async def events(side: Sides, type_: str) -> list[dict[str, Any]]:
    response = await side.gateway.get(
        "/v1/events", params={"limit": "500"}, headers=side.provider.headers()
    )
    assert response.status == 200, await response.text()
    return [e for e in (await response.json())["events"] if e["type"] == type_]


def wa_texts(items: list[dict[str, Any]]) -> list[str]:
    values = [i["payload"]["entry"][0]["changes"][0]["value"] for i in items]
    return [v["messages"][0]["text"]["body"] for v in values if "messages" in v]


def mimi_text(b64url: str) -> dict[str, Any]:
    part = {"cardinality": "single", "contentType": "text/plain;charset=utf-8", "content": b64url}
    return {"nestedPart": part}


async def with_whatsapp_user(side: Sides) -> Sides:
    """`side` once a WhatsApp user who consented to the provider is known to the gateway."""
    await create_user(side.sandbox, WA, [side.provider.client_id])
    await eventually(lambda: events(side, "consent"))
    return side


async def send_encrypted(side: Sides, to: str, text: str, *, id: str | None = None) -> str:
    native = {"type": "text", "text": {"body": text}}
    body = side.alice.message(to, id=id, encrypted=await side.alice.encrypt_for(to, native))
    response = await side.alice.send(body)
    assert response.status == 202, await response.text()
    return str(body["id"])


async def test_onboarding_e2ee_both_ways_plaintext_receipts_and_consent(sides: Sides) -> None:
    side, alice = sides, sides.alice
    await create_user(side.sandbox, WA, [side.provider.client_id])
    await create_user(side.sandbox, IG, [side.provider.client_id])
    # The consent the users gave reached the gateway as the platform's consent webhook.
    granted = await eventually(lambda: events(side, "consent"))
    assert {(e["user"], e["state"]) for e in granted} >= {(WA, "granted"), (IG, "granted")}

    # Third party -> WhatsApp sandbox user, E2EE: decrypted in the user's inbox.
    first = await send_encrypted(side, WA, "hello standalone")
    items = await eventually(lambda: inbox(side.sandbox, WA), within_s=10)
    assert wa_texts(items) == ["hello standalone"]
    sender = items[0]["payload"]["entry"][0]["changes"][0]["value"]["messages"][0]["from"]
    assert sender.isdigit()  # the provider-scoped native id the gateway gave Alice

    # The user's client says "delivered", through the platform's status webhook.
    receipts = await eventually(lambda: events(side, "receipt"), within_s=10)
    assert (receipts[0]["message_id"], receipts[0]["status"]) == (first, "delivered")
    assert (receipts[0]["from"], receipts[0]["to"]) == (WA, alice.uri)

    # The sandbox user answers, E2EE with the session Alice started; the test decrypts it.
    response = await side.sandbox.post(
        "/sandbox/v1/send", headers=admin_headers(),
        json={"from": WA, "to": alice.uri, "content": mimi_text("aGkgYmFjaw")},  # "hi back"
    )  # fmt: skip
    assert response.status == 202, await response.text()
    reply_id = (await response.json())["id"]
    (message,) = await eventually(lambda: events(side, "message"), within_s=10)
    assert (message["id"], message["from"], message["to"]) == (reply_id, WA, alice.uri)
    assert "content" not in message
    assert alice.decrypt(message["encrypted"]) == {"type": "text", "text": {"body": "hi back"}}

    # Alice reads it: the read status reaches the sandbox user's inbox.
    receipt = {"message_id": reply_id, "from": alice.uri, "to": WA, "status": "read"}
    response = await side.gateway.post("/v1/receipts", json=receipt, headers=alice.headers)
    assert response.status == 202, await response.text()

    async def read_status() -> list[dict[str, Any]]:
        values = [
            i["payload"]["entry"][0]["changes"][0]["value"] for i in await inbox(side.sandbox, WA)
        ]
        return [s for v in values for s in v.get("statuses", []) if s["status"] == "read"]

    (status,) = await eventually(read_status, within_s=10)
    assert status["id"].endswith(reply_id)

    # A third party sends MIMI content in plaintext to Instagram: the gateway translates it.
    body = alice.message(IG, content=mimi_text("aGVsbG8"))  # "hello"
    response = await alice.send(body)
    assert response.status == 202, await response.text()
    ig_items = await eventually(lambda: inbox(side.sandbox, IG), within_s=10)
    assert ig_items[0]["payload"]["entry"][0]["messaging"][0]["message"]["text"] == "hello"

    # The WhatsApp user withdraws consent: the provider hears of it, and cannot reach them.
    response = await side.sandbox.put(
        "/sandbox/v1/consent", json={"user": WA, "consent": []}, headers=admin_headers()
    )
    assert response.status == 200, await response.text()

    async def revoked() -> bool:
        return any(
            e["user"] == WA and e["state"] == "revoked" for e in await events(side, "consent")
        )

    await eventually(revoked, within_s=10)
    response = await side.gateway.get("/v1/keys", params={"user": WA}, headers=alice.headers)
    assert response.status == 404


async def test_a_killed_sandbox_gets_its_messages_once_it_is_back(
    topology: Topology, sides: Sides
) -> None:
    side = await with_whatsapp_user(sides)
    await send_encrypted(side, WA, "warm-up")
    await eventually(lambda: inbox(side.sandbox, WA), within_s=10)
    Topology.kill(topology.sandbox)
    for word in ("one", "two", "three"):
        await send_encrypted(side, WA, word)
    await asyncio.sleep(0.5)  # the gateway is retrying meanwhile
    await asyncio.to_thread(topology.start_sandbox)

    async def all_three() -> list[dict[str, Any]] | None:
        items = await inbox(side.sandbox, WA)
        return items if len(wa_texts(items)) >= 4 else None

    items = await eventually(all_three, within_s=20)
    assert wa_texts(items) == ["warm-up", "one", "two", "three"]
    await asyncio.sleep(0.5)  # anything delivered twice would show up by now
    assert len(wa_texts(await inbox(side.sandbox, WA))) == 4


async def user_sends(side: Sides, text_b64url: str) -> int:
    response = await side.sandbox.post(
        "/sandbox/v1/send", headers=admin_headers(),
        json={"from": WA, "to": side.alice.uri, "content": mimi_text(text_b64url)},
    )  # fmt: skip
    return response.status


async def test_the_sandbox_keeps_and_retries_its_webhooks_while_the_gateway_is_down(
    topology: Topology, sides: Sides
) -> None:
    side = await with_whatsapp_user(sides)
    await send_encrypted(side, WA, "hello")
    await eventually(lambda: events(side, "receipt"), within_s=10)
    assert await user_sends(side, "Zmlyc3Q") == 202  # "first"
    await eventually(lambda: events(side, "message"), within_s=10)
    Topology.kill(topology.gateway)
    # While the gateway is down the user keeps writing in the conversation (its session with
    # Alice exists): the sandbox answers and queues the webhooks, in its data dir.
    for text in ("aW4gdGhlIGRhcms", "c3RpbGwgaGVyZQ"):  # "in the dark", "still here"
        assert await user_sends(side, text) == 202
    response = await side.sandbox.get("/readyz")
    assert (await response.json())["pending"] == 2
    # The sandbox goes down too before the gateway is back: its queue is on disk.
    Topology.kill(topology.sandbox)
    await asyncio.to_thread(topology.start_gateway)
    await asyncio.to_thread(topology.start_sandbox)

    async def pending_drained() -> bool:
        response = await side.sandbox.get("/readyz")
        return (await response.json())["pending"] == 0

    await eventually(pending_drained, within_s=20)

    async def three() -> list[dict[str, Any]] | None:
        messages = await events(side, "message")
        return messages if len(messages) >= 3 else None

    messages = await eventually(three, within_s=10)
    texts = [side.alice.decrypt(m["encrypted"])["text"]["body"] for m in messages]
    assert texts == ["first", "in the dark", "still here"]


@pytest.mark.parametrize(
    ("drop", "gateway", "key"),
    [
        ("GATEWAY_HTTP_PLATFORM__APP_SECRET", "http://127.0.0.1:1", "http_platform.app_secret"),
        ("", "127.0.0.1:1", "--gateway"),
    ],
)
def test_the_sandbox_refuses_to_start_misconfigured(
    tmp_path: Path, drop: str, gateway: str, key: str
) -> None:
    env = {k: v for k, v in _env().items() if k != drop}
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "sandbox", "serve", "--port", str(free_port()),
         "--gateway", gateway, "--data-dir", str(tmp_path / "sb")],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert f"configuration error: {key}" in done.stderr
    assert not (tmp_path / "sb").exists()  # nothing written before the check
