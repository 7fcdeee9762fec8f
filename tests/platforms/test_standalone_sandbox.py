"""The standalone sandbox app and a gateway with `platforms = http` in one test process: the same
E2EE round trips as the embedded sandbox, over the `http` protocol, on both storage backends;
and what each side refuses (signatures, consent, malformed bodies)."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web

from gateway.app import create_app
from gateway.config import Config, ConfigError, HttpPlatformConfig, load_config
from gateway.http.sandbox_server import LINK, create_sandbox_app
from gateway.platforms.ingress import key_claim_message
from gateway.platforms.sandbox_link import GatewayLink, read_queue
from tests.conftest import admin_headers, make_config
from tests.http import providers
from tests.http.relay_support import ThirdPartyUser, events_of, eventually, inbox, sandbox_user
from tests.http.test_relay_roundtrip import fast, received_text
from tests.system.test_serve import free_port

SECRET = "standalone-secret"
PEERS = {
    "whatsapp": "4915112345678",
    "messenger": "27000000000000001",
    "instagram": "17841400000000001",
}
NATIVE = {
    "whatsapp": {"type": "text", "text": {"body": "hello"}},
    "messenger": {"text": "hello"},
    "instagram": {"text": "hello"},
}


@dataclass
class Linked:
    gateway: Any
    sandbox: Any


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={mac}", "Content-Type": "application/json"}


@pytest.fixture
async def linked(
    backend_config: Config, aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path
) -> Linked:
    sandbox_port = free_port()
    platform = HttpPlatformConfig(
        timeout_s=2, sandbox_url=f"http://127.0.0.1:{sandbox_port}", app_secret=SECRET
    ).expanded()
    limits = msgspec.structs.replace(backend_config.limits, enabled=False)
    config = msgspec.structs.replace(
        fast(backend_config), platforms="http", http_platform=platform, limits=limits
    )
    gateway = await aiohttp_client(providers.act_as_providers(create_app(config)))
    sandbox_config = make_config(tmp_path / "sandbox", http_platform=platform)
    app = create_sandbox_app(sandbox_config, str(gateway.make_url("")).rstrip("/"))
    server = await aiohttp_server(app, port=sandbox_port)
    sandbox = await aiohttp_client(server)
    return Linked(gateway, sandbox)


@pytest.mark.parametrize("service", ["whatsapp", "messenger", "instagram"])
async def test_encrypted_round_trip_through_the_standalone_sandbox(
    linked: Linked, service: str
) -> None:
    peer = await sandbox_user(linked.sandbox, service, PEERS[service])
    alice = ThirdPartyUser(linked.gateway, "acme", "alice")
    await alice.publish_keys()
    body = alice.message(peer, encrypted=await alice.encrypt_for(peer, NATIVE[service]))
    response = await alice.send(body)
    assert response.status == 202, await response.text()
    items = await eventually(lambda: inbox(linked.sandbox, peer))
    text, sender = received_text(service, items[0]["payload"])
    assert text == "hello"
    assert sender["id"].isdigit()
    if service != "instagram":  # Instagram has no delivery receipts
        (receipt,) = await eventually(lambda: events_of(linked.gateway, "acme", "receipt"))
        assert (receipt["message_id"], receipt["status"]) == (body["id"], "delivered")

    response = await linked.sandbox.post(
        "/sandbox/v1/send", headers=admin_headers(),
        json={"from": peer, "to": alice.uri, "content": {"nestedPart": {
            "cardinality": "single", "contentType": "text/plain;charset=utf-8",
            "content": "aGkgYmFjaw"}}},
    )  # fmt: skip
    assert response.status == 202, await response.text()
    reply_id = (await response.json())["id"]
    (event,) = await eventually(lambda: events_of(linked.gateway, "acme", "message"))
    assert (event["id"], event["from"], event["to"]) == (reply_id, peer, alice.uri)
    reply = alice.decrypt(event["encrypted"])
    assert reply == ({"type": "text", "text": {"body": "hi back"}} if service == "whatsapp"
                     else {"text": "hi back"})  # fmt: skip

    # Alice reads the reply: the sandbox user's inbox shows the read status.
    receipt = {"message_id": reply_id, "from": alice.uri, "to": peer, "status": "read"}
    response = await linked.gateway.post("/v1/receipts", json=receipt, headers=alice.headers)
    assert response.status == 202, await response.text()

    async def two() -> list[dict[str, Any]] | None:
        items = await inbox(linked.sandbox, peer)
        return items if len(items) >= 2 else None

    status = json.dumps((await eventually(two))[1]["payload"])
    assert "read" in status and reply_id in status


async def test_a_key_claim_must_be_signed_and_for_a_consenting_user(linked: Linked) -> None:
    alice = ThirdPartyUser(linked.gateway, "acme", "alice")
    await alice.publish_keys()
    await sandbox_user(linked.sandbox, "whatsapp", "111", consent=["acme"])
    await sandbox_user(linked.sandbox, "whatsapp", "222", consent=["other"])

    async def claim(user: str, for_user: str, secret: str = SECRET) -> Any:
        mac = hmac.new(
            secret.encode(), key_claim_message("whatsapp", user, for_user), hashlib.sha256
        ).hexdigest()
        return await linked.gateway.get(
            "/platform/v1/whatsapp/keys", params={"user": user, "for": for_user},
            headers={"X-Hub-Signature-256": f"sha256={mac}"},
        )  # fmt: skip

    response = await claim(alice.uri, "111", secret="wrong")
    assert response.status == 401
    response = await claim(alice.uri, "222")  # did not consent to acme
    assert response.status == 404
    response = await claim("mimi://whatsapp/u/333", "111")
    assert response.status == 422
    assert (await response.json())["field"] == "user"
    response = await claim(alice.uri, "111")
    assert response.status == 200, await response.text()
    bundle = await response.json()
    assert bundle["user"] == alice.uri and bundle["id"].isdigit()
    assert bundle["identity_key"] == alice.party.identity_key


async def test_a_consent_webhook_is_signed_and_well_formed(linked: Linked) -> None:
    good = json.dumps({"object": "consent", "entry": [{"user": "42", "consent": ["acme"]}]})
    good = good.encode()
    url = "/platform/v1/messenger/webhook"
    response = await linked.gateway.post(url, data=good, headers=signed(good, "wrong"))
    assert response.status == 401
    bad = json.dumps({"object": "consent", "entry": [{"user": "42"}]}).encode()
    response = await linked.gateway.post(url, data=bad, headers=signed(bad))
    assert response.status == 422
    response = await linked.gateway.post(url, data=good, headers=signed(good))
    assert response.status == 200
    (event,) = await events_of(linked.gateway, "acme", "consent")
    assert (event["user"], event["state"]) == ("mimi://messenger/u/42", "granted")


async def test_the_send_api_refuses_what_it_cannot_deliver(linked: Linked) -> None:
    await sandbox_user(linked.sandbox, "whatsapp", "111")
    post = linked.sandbox.post
    response = await post("/whatsapp/messages", json={"to": "111"})
    assert response.status == 422
    body = {"to": "999", "from": "1", "type": "text", "text": {"body": "x"}}
    response = await post("/whatsapp/messages", json=body)
    assert response.status == 404
    await post("/sandbox/v1/outage", json={"service": "whatsapp", "down": True},
               headers=admin_headers())  # fmt: skip
    response = await post("/whatsapp/messages", json=body | {"to": "111"})
    assert response.status == 503
    response = await post("/telegram/messages", json=body)
    assert response.status == 404
    response = await linked.sandbox.get("/whatsapp/keys", params={"user": "999"})
    assert response.status == 404
    response = await linked.sandbox.get("/sandbox/v1/inbox", params={"user": "x"})
    assert response.status == 401  # the admin API needs the sandbox's admin token


async def test_webhooks_wait_in_the_data_dir_while_the_gateway_is_away(
    linked: Linked, tmp_path: Path
) -> None:
    link = linked.sandbox.server.app[LINK]
    link.gateway_url = "http://127.0.0.1:1"  # nobody listens there
    users = [f"1784140000000000{n}" for n in range(3)]
    for user in users:
        await sandbox_user(linked.sandbox, "instagram", user, consent=["acme"])
    assert link.pending == 3
    # The consent webhooks, kept in the data dir until the gateway takes them.
    queued = read_queue(tmp_path / "sandbox" / "sandbox-webhook-queue.jsonl")
    docs = [json.loads(item.body) for item in queued]
    assert [(d["object"], d["entry"][0]["user"]) for d in docs] == [("consent", u) for u in users]
    link.gateway_url = str(linked.gateway.make_url("")).rstrip("/")

    async def consents() -> list[dict[str, Any]] | None:
        found = await events_of(linked.gateway, "acme", "consent")
        return found if len(found) >= 3 else None

    events = await eventually(consents)
    assert [e["user"] for e in events] == [f"mimi://instagram/u/{u}" for u in users]
    assert link.pending == 0


def test_one_sandbox_url_and_secret_for_every_service() -> None:
    config = load_config(env={
        "GATEWAY_PLATFORMS": "http",
        "GATEWAY_HTTP_PLATFORM__SANDBOX_URL": "http://127.0.0.1:9000/",
        "GATEWAY_HTTP_PLATFORM__APP_SECRET": "s3",
        "GATEWAY_HTTP_PLATFORM__SERVICES__INSTAGRAM__URL": "https://ig.example/send",
    })  # fmt: skip
    services = config.http_platform.services
    assert services["whatsapp"].url == "http://127.0.0.1:9000/whatsapp/messages"
    assert services["messenger"].keys_url == "http://127.0.0.1:9000/messenger/keys"
    assert services["instagram"].url == "https://ig.example/send"  # named: kept
    assert {s.app_secret for s in services.values()} == {"s3"}
    with pytest.raises(ConfigError) as caught:
        load_config(env={"GATEWAY_HTTP_PLATFORM__SANDBOX_URL": "127.0.0.1:9000"})
    assert caught.value.key == "http_platform.sandbox_url"


async def test_a_webhook_refused_for_its_signature_is_an_error_not_a_silent_loss(
    linked: Linked,
) -> None:
    link = linked.sandbox.server.app[LINK]
    link.secret = "not-the-gateways"
    response = await linked.sandbox.post(
        "/sandbox/v1/users", headers=admin_headers(),
        json={"service": "whatsapp", "id": "5", "name": "Sam", "consent": ["acme"]},
    )  # fmt: skip
    assert response.status == 503
    assert "refused" in (await response.json())["detail"]
    assert link.pending == 0
    assert await events_of(linked.gateway, "acme", "consent") == []


def test_the_webhook_queue_journal_replays_adds_and_drops_and_ignores_a_torn_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "queue.jsonl"
    path.write_bytes(
        b'{"add":{"service":"whatsapp","body":"YQ=="}}\n'
        b'{"add":{"service":"instagram","body":"Yg=="}}\n'
        b'{"add":{"service":"whatsapp","body":"Yw=="}}\n'
        b'{"drop":2}\n'
        b'{"add":{"service":"messenger","body":"ZA=="}}\n'
        b'{"add":{"service":"wha'  # torn by a crash while it was appended
    )
    assert [(p.service, p.body) for p in read_queue(path)] == [
        ("whatsapp", b"c"), ("messenger", b"d"),
    ]  # fmt: skip
    assert read_queue(tmp_path / "missing.jsonl") == []


def _typing_webhook(n: int) -> dict[str, Any]:
    return {"object": "instagram", "entry": [{"id": "1", "messaging": [{"n": n}]}]}


async def test_webhooks_nobody_waits_for_go_together_and_survive_an_outage(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    # A recording stand-in for the gateway's webhook endpoint: this test is about the link.
    received: list[dict[str, Any]] = []
    answer = {"status": 503}

    async def webhook(request: web.Request) -> web.Response:
        if answer["status"] != 200:
            return web.json_response({}, status=answer["status"])
        received.append(await request.json())
        return web.json_response({"ids": []})

    app = web.Application()
    app.router.add_post("/platform/v1/{service}/webhook", webhook)
    server = await aiohttp_server(app)
    queue = tmp_path / "queue.jsonl"
    async with aiohttp.ClientSession() as session:
        link = GatewayLink(str(server.make_url("")), SECRET, session, queue, retry_base_s=0.01)
        link.start()
        try:
            answer["status"] = 200
            for n in range(3):  # statuses and typing: nobody waits for them
                assert await link.post("instagram", _typing_webhook(n), wait=False) == []

            async def batched() -> bool:
                return len(received) >= 1

            await eventually(batched)
            assert len(received) == 1  # one webhook carrying the three, in order
            assert [e["messaging"][0]["n"] for e in received[0]["entry"]] == [0, 1, 2]

            answer["status"] = 503  # the gateway is away: they wait in the journal
            for n in range(3, 5):
                await link.post("instagram", _typing_webhook(n), wait=False)

            async def queued() -> bool:
                return link.pending == 2

            await eventually(queued)
            assert len(read_queue(queue)) == 2
            answer["status"] = 200

            async def delivered() -> bool:
                return link.pending == 0

            await eventually(delivered)
            assert [e["messaging"][0]["n"] for r in received[1:] for e in r["entry"]] == [3, 4]
        finally:
            await link.close()
