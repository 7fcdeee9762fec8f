"""The `http` platform against a fake Meta endpoint run in the test (never shipped)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp import web

from gateway.app import create_app
from gateway.config import HttpPlatformConfig, PlatformEndpoint
from gateway.crypto import OlmCiphertext, OlmParty
from gateway.http.app_keys import CONSENT, PLATFORM, STORE
from gateway.platforms.base import Outgoing
from gateway.platforms.http import HttpPlatform
from tests.conftest import assert_problem
from tests.http import providers
from tests.http.relay_support import ThirdPartyUser, events_of, eventually
from tests.http.test_relay_roundtrip import fast_config

SECRET = "meta-app-secret"
VERIFY = "meta-verify-token"
WA_USER = "4915112345678"


class FakeMetaPlatform:
    """WhatsApp's side: one user with an Olm account, a send endpoint that can go down."""

    def __init__(self) -> None:
        self.party = OlmParty()
        self.bundle = self.party.key_bundle(5, fallback=True)
        self.up = True
        self.received: list[dict[str, Any]] = []
        self.refused = 0
        self.app = web.Application()
        self.app.router.add_post("/whatsapp/messages", self.messages)
        self.app.router.add_get("/whatsapp/keys", self.keys)

    async def messages(self, request: web.Request) -> web.Response:
        if not self.up:
            self.refused += 1
            return web.json_response({"error": {"message": "internal detail"}}, status=503)
        body = await request.json()
        self.received.append(body)
        return web.json_response({"messages": [{"id": f"wamid.N{len(self.received)}"}]})

    async def keys(self, request: web.Request) -> web.Response:
        if request.query["user"] != WA_USER:
            return web.Response(status=404)
        key_id, otk = next(iter(self.bundle.one_time_keys.items()))
        return web.json_response({
            "user": "ignored", "identity_key": self.bundle.identity_key,
            "signing_key": self.bundle.signing_key,
            "one_time_key": {"key_id": key_id, "key": otk.key, "signature": otk.signature},
            "fallback_key": None,
        })  # fmt: skip

    def decrypt(self, body: dict[str, Any]) -> Any:
        enc = body["encrypted"]
        wire = OlmCiphertext.from_wire(enc["type"], enc["body"], enc["sender_key"])
        return json.loads(self.party.decrypt(wire))


def signed(payload: dict[str, Any], secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {"X-Hub-Signature-256": f"sha256={mac}", "Content-Type": "application/json"}


def wa_webhook(value: dict[str, Any], to: str) -> dict[str, Any]:
    metadata = {"display_phone_number": to, "phone_number_id": to}
    change = {"field": "messages", "value": {"messaging_product": "whatsapp",
                                             "metadata": metadata, **value}}  # fmt: skip
    return {"object": "whatsapp_business_account", "entry": [{"id": to, "changes": [change]}]}


@pytest.fixture
async def meta(aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path) -> Any:
    fake = FakeMetaPlatform()
    server = await aiohttp_server(fake.app)
    endpoint = PlatformEndpoint(
        url=str(server.make_url("/whatsapp/messages")), app_secret=SECRET,
        verify_token=VERIFY, keys_url=str(server.make_url("/whatsapp/keys")),
    )  # fmt: skip
    config = fast_config(tmp_path / "data")
    config = msgspec.structs.replace(
        config,
        platforms="http",
        http_platform=HttpPlatformConfig(timeout_s=2, services={"whatsapp": endpoint}),
    )
    app = create_app(config)
    providers.act_as_providers(app)
    client = await aiohttp_client(app)
    await app[CONSENT].set(f"mimi://whatsapp/u/{WA_USER}", ["acme"])
    return client, fake


async def test_round_trip_outage_statuses_and_a_reply(meta: Any) -> None:
    client, fake = meta
    peer = f"mimi://whatsapp/u/{WA_USER}"
    alice = ThirdPartyUser(client, "acme", "alice")
    await alice.publish_keys()
    fake.up = False
    native = {"type": "text", "text": {"body": "hello meta"}}
    body = alice.message(peer, encrypted=await alice.encrypt_for(peer, native))
    assert (await alice.send(body)).status == 202

    async def refused() -> bool:
        return fake.refused >= 2

    await eventually(refused)
    fake.up = True
    await eventually(lambda: _received(fake, 1))
    assert len(fake.received) == 1  # once, despite the retries
    sent = fake.received[0]
    assert (sent["to"], sent["type"]) == (WA_USER, "encrypted")
    assert fake.decrypt(sent) == native
    alice_native = sent["from"]
    assert alice_native.isdigit() and alice_native != WA_USER

    # WhatsApp reports the message delivered, then its user answers, encrypted.
    status = {"id": "wamid.N1", "status": "delivered", "timestamp": str(int(time.time())),
              "recipient_id": WA_USER}  # fmt: skip
    raw, headers = signed(wa_webhook({"statuses": [status]}, alice_native))

    async def taken() -> bool:
        # Meta retries a webhook until it is taken: the status may overtake our record of the
        # message's native id (503 meanwhile).
        response = await client.post("/platform/v1/whatsapp/webhook", data=raw, headers=headers)
        assert response.status in (200, 503), await response.text()
        return response.status == 200

    await eventually(taken)
    (receipt,) = await events_of(client, "acme", "receipt")
    assert (receipt["message_id"], receipt["status"]) == (body["id"], "delivered")

    reply = fake.party.encrypt(alice.party.identity_key, b'{"type":"text","text":{"body":"hi"}}')
    message = {"from": WA_USER, "id": "wamid.R1", "timestamp": str(int(time.time())),
               "type": "encrypted", "encrypted": reply.to_wire()}  # fmt: skip
    raw, headers = signed(wa_webhook({"messages": [message]}, alice_native))
    response = await client.post("/platform/v1/whatsapp/webhook", data=raw, headers=headers)
    assert (await response.json())["accepted"] == 1
    (event,) = await events_of(client, "acme", "message")
    assert (event["from"], event["to"]) == (peer, alice.uri)
    assert alice.decrypt(event["encrypted"]) == {"type": "text", "text": {"body": "hi"}}


async def _received(fake: FakeMetaPlatform, n: int) -> bool:
    return len(fake.received) >= n


async def test_bad_signatures_change_nothing(meta: Any) -> None:
    client, _ = meta
    payload = wa_webhook({"statuses": []}, "1")
    for headers in (
        signed(payload, secret="wrong")[1],
        {"Content-Type": "application/json"},
        {"Content-Type": "application/json", "X-Hub-Signature-256": "sha256=00"},
    ):
        response = await client.post(
            "/platform/v1/whatsapp/webhook", data=json.dumps(payload), headers=headers
        )
        body = await response.json()
        assert_problem(response.status, response.content_type, body, 401,
                       "/problems/invalid-signature")  # fmt: skip
        assert body["field"] == "X-Hub-Signature-256"
    assert await events_of(client, "acme", "message") == []
    raw, headers = signed(payload)
    response = await client.post("/platform/v1/messenger/webhook", data=raw, headers=headers)
    assert response.status == 404  # no endpoint configured for messenger
    raw, headers = signed({"object": "whatsapp_business_account", "entry": "x"})
    response = await client.post("/platform/v1/whatsapp/webhook", data=raw, headers=headers)
    assert response.status == 422


async def test_verification_handshake(meta: Any) -> None:
    client, _ = meta
    query = {"hub.mode": "subscribe", "hub.verify_token": VERIFY, "hub.challenge": "1158201444"}
    response = await client.get("/platform/v1/whatsapp/webhook", params=query)
    assert response.status == 200
    assert await response.text() == "1158201444"
    response = await client.get(
        "/platform/v1/whatsapp/webhook", params=query | {"hub.verify_token": "nope"}
    )
    assert response.status == 401
    assert (await response.json())["type"] == "/problems/invalid-signature"


async def test_sandbox_routes_are_absent_with_the_http_platform(meta: Any) -> None:
    client, _ = meta
    from tests.conftest import admin_headers

    response = await client.get("/sandbox/v1/inbox", params={"user": "x"}, headers=admin_headers())
    assert response.status == 404


async def test_a_signed_webhook_nested_too_deep_is_a_4xx(meta: Any) -> None:
    client, _ = meta
    raw = b'{"object": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    mac = hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    headers = {"X-Hub-Signature-256": f"sha256={mac}", "Content-Type": "application/json"}
    response = await client.post("/platform/v1/whatsapp/webhook", data=raw, headers=headers)
    body = await response.json()
    assert_problem(response.status, response.content_type, body, 422, "/problems/validation")
    assert "[[" not in body["detail"]


async def test_a_status_that_overtakes_its_messages_record_waits_for_it(meta: Any) -> None:
    client, fake = meta
    peer = f"mimi://whatsapp/u/{WA_USER}"
    alice = ThirdPartyUser(client, "acme", "alice")
    await alice.publish_keys()
    native = {"type": "text", "text": {"body": "overtaken"}}
    body = alice.message(peer, encrypted=await alice.encrypt_for(peer, native))
    assert (await alice.send(body)).status == 202
    await eventually(lambda: _received(fake, 1))
    store, platform = client.app[STORE], client.app[PLATFORM]
    assert isinstance(platform, HttpPlatform)
    gateway_id = await store.fetchval(
        "SELECT message_id FROM platform_message_ids WHERE native_id = 'wamid.N1'"
    )
    assert gateway_id is not None
    # As if the service's answer to the send were still on its way: no record yet.
    await store.write(
        "forget",
        lambda tx: tx.execute("DELETE FROM platform_message_ids WHERE native_id = 'wamid.N1'"),
    )
    status = {"id": "wamid.N1", "status": "delivered", "timestamp": str(int(time.time())),
              "recipient_id": WA_USER}  # fmt: skip
    raw, headers = signed(wa_webhook({"statuses": [status]}, fake.received[0]["from"]))
    webhook = asyncio.ensure_future(
        client.post("/platform/v1/whatsapp/webhook", data=raw, headers=headers)
    )
    await asyncio.sleep(0.1)
    assert not webhook.done()  # it waits for the record rather than answering 503
    item = Outgoing(
        id=gateway_id, kind="message", service="whatsapp", sender=alice.uri, recipient=peer,
        sent_at=0, payload={},
    )  # fmt: skip
    await platform._remember_message(item, "wamid.N1")
    response = await webhook
    assert response.status == 200, await response.text()
    (receipt,) = await events_of(client, "acme", "receipt")
    assert (receipt["message_id"], receipt["status"]) == (body["id"], "delivered")


async def test_a_status_back_before_its_messages_record_commits_is_taken_at_once(
    meta: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, fake = meta
    peer = f"mimi://whatsapp/u/{WA_USER}"
    alice = ThirdPartyUser(client, "acme", "alice")
    await alice.publish_keys()
    store = client.app[STORE]
    held, writing = asyncio.Event(), asyncio.Event()
    write = store.write

    async def holding_records(name: str, unit: Any) -> Any:
        if name == "platform_message_ids":  # the record of the native id, held back
            writing.set()
            await held.wait()
        return await write(name, unit)

    monkeypatch.setattr(store, "write", holding_records)
    native = {"type": "text", "text": {"body": "quick status"}}
    body = alice.message(peer, encrypted=await alice.encrypt_for(peer, native))
    assert (await alice.send(body)).status == 202
    async with asyncio.timeout(5):
        await writing.wait()  # the service answered the send; its record is not written
    status = {"id": "wamid.N1", "status": "delivered", "timestamp": str(int(time.time())),
              "recipient_id": WA_USER}  # fmt: skip
    raw, headers = signed(wa_webhook({"statuses": [status]}, fake.received[0]["from"]))
    try:
        async with asyncio.timeout(0.4):  # less than a status waits for a record in the store
            response = await client.post(
                "/platform/v1/whatsapp/webhook", data=raw, headers=headers
            )
        assert response.status == 200, await response.text()
        assert (await response.json())["accepted"] == 1
    finally:
        held.set()
    (receipt,) = await events_of(client, "acme", "receipt")
    assert (receipt["message_id"], receipt["status"]) == (body["id"], "delivered")


async def test_a_webhook_of_several_statuses_relays_each_once_and_a_bad_one_alone(
    meta: Any,
) -> None:
    client, fake = meta
    peer = f"mimi://whatsapp/u/{WA_USER}"
    alice = ThirdPartyUser(client, "acme", "alice")
    await alice.publish_keys()
    sent = []
    for n in range(3):
        native = {"type": "text", "text": {"body": f"batched {n}"}}
        body = alice.message(peer, encrypted=await alice.encrypt_for(peer, native))
        assert (await alice.send(body)).status == 202
        sent.append(body["id"])
    store = client.app[STORE]

    async def recorded() -> bool:
        return await store.fetchval("SELECT COUNT(*) FROM platform_message_ids") == 3

    await eventually(recorded)
    alice_native = fake.received[0]["from"]
    now = str(int(time.time()))

    def statuses(number: str, *ids: str) -> dict[str, Any]:
        metadata = {"display_phone_number": number, "phone_number_id": number}
        value = {"messaging_product": "whatsapp", "metadata": metadata, "statuses": [
            {"id": i, "status": "delivered", "timestamp": now, "recipient_id": WA_USER}
            for i in ids
        ]}  # fmt: skip
        return {"id": number, "changes": [{"field": "messages", "value": value}]}

    # Meta batches: two statuses, one for a number that is no user of ours (refused on its
    # own), then the third.
    webhook = {"object": "whatsapp_business_account", "entry": [
        statuses(alice_native, "wamid.N1", "wamid.N2"), statuses("999000111", "wamid.N3"),
        statuses(alice_native, "wamid.N3"),
    ]}  # fmt: skip
    raw, headers = signed(webhook)
    for _ in range(2):  # Meta may post a webhook again: nothing reaches the provider twice
        response = await client.post("/platform/v1/whatsapp/webhook", data=raw, headers=headers)
        assert response.status == 200, await response.text()
        assert (await response.json())["accepted"] == 3
    receipts = await events_of(client, "acme", "receipt")
    assert sorted(r["message_id"] for r in receipts) == sorted(sent)
    assert {r["status"] for r in receipts} == {"delivered"}


async def test_records_of_sends_answered_together_are_one_unit_and_share_its_fate(
    meta: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _ = meta
    store, platform = client.app[STORE], client.app[PLATFORM]
    assert isinstance(platform, HttpPlatform)
    units: list[str] = []
    write = store.write
    failing = {"on": False}

    async def counting(name: str, unit: Any) -> Any:
        units.append(name)
        if failing["on"]:
            raise RuntimeError("disk full")
        return await write(name, unit)

    monkeypatch.setattr(store, "write", counting)

    def sent(n: int) -> Outgoing:
        return Outgoing(
            id=f"gw_{n}", kind="message", service="whatsapp", sender="mimi://acme/u/alice",
            recipient=f"mimi://whatsapp/u/{WA_USER}", sent_at=0, payload={},
        )  # fmt: skip

    await asyncio.gather(*(platform._remember_message(sent(n), f"wamid.T{n}") for n in range(5)))
    assert units == ["platform_message_ids"]
    for n in range(5):
        found = await store.fetchval(
            "SELECT message_id FROM platform_message_ids WHERE native_id = $1", f"wamid.T{n}"
        )
        assert found == f"gw_{n}"
    failing["on"] = True  # a record not written: each of its sends is told (and retried)
    results = await asyncio.gather(
        *(platform._remember_message(sent(n), f"wamid.F{n}") for n in range(5, 7)),
        return_exceptions=True,
    )
    assert [type(r) for r in results] == [RuntimeError, RuntimeError]
