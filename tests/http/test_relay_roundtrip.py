"""A third-party user and sandbox users of each service, end to end through the HTTP API."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import msgspec
import pytest

from gateway.app import create_app
from gateway.config import Config
from gateway.content import content_from_json
from gateway.http.app_keys import STORE
from gateway.translate import TRANSLATORS, MemoryMessageRefs, derived_message_id
from tests.conftest import admin_headers, make_config
from tests.http import providers
from tests.http.relay_support import (
    ThirdPartyUser,
    events_of,
    eventually,
    inbox,
    sandbox_user,
)

MARKER = "zebra-marker-7f3a"


def fast_config(data_dir: Path, **relay: Any) -> Config:
    """Deliveries retried within tens of milliseconds, so tests stay fast."""
    return fast(make_config(data_dir), **relay)


def fast(config: Config, **relay: Any) -> Config:
    """`config` with deliveries retried within tens of milliseconds."""
    quick = msgspec.structs.replace(
        config.relay, retry_base_s=0.02, retry_max_s=0.1, poll_interval_s=0.2, **relay
    )
    return msgspec.structs.replace(config, relay=quick)


@pytest.fixture
async def rclient(aiohttp_client: Any, tmp_path: Path) -> Any:
    return await aiohttp_client(
        providers.act_as_providers(create_app(fast_config(tmp_path / "data")))
    )


@pytest.fixture
async def brclient(backend_config: Config, aiohttp_client: Any) -> Any:
    """`rclient` once per storage backend."""
    return await aiohttp_client(providers.act_as_providers(create_app(fast(backend_config))))


NATIVE_TEXT = {
    "whatsapp": {"type": "text", "text": {"body": f"hello {MARKER}"}},
    "messenger": {"text": f"hello {MARKER}"},
    "instagram": {"text": f"hello {MARKER}"},
}


def received_text(service: str, envelope: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(text, sender object) of a native webhook envelope."""
    if service == "whatsapp":
        value = envelope["entry"][0]["changes"][0]["value"]
        message = value["messages"][0]
        assert value["contacts"][0]["wa_id"] == message["from"]
        return message["text"]["body"], {"id": message["from"]}
    messaging = envelope["entry"][0]["messaging"][0]
    return messaging["message"]["text"], messaging["sender"]


@pytest.mark.parametrize("service", ["whatsapp", "messenger", "instagram"])
async def test_encrypted_message_reaches_the_sandbox_user_and_a_reply_comes_back(
    brclient: Any, service: str
) -> None:
    client = brclient
    peer = await sandbox_user(client, service, "4915112345678")
    alice = ThirdPartyUser(client, "acme", "alice")
    await alice.publish_keys()

    encrypted = await alice.encrypt_for(peer, NATIVE_TEXT[service])
    body = alice.message(peer, encrypted=encrypted)
    response = await alice.send(body)
    assert response.status == 202, await response.text()
    accepted = await response.json()
    assert accepted["status"] == "accepted"
    assert accepted["id"].startswith("gw_")

    items = await eventually(lambda: inbox(client, peer))
    assert len(items) == 1
    expected_object = {"whatsapp": "whatsapp_business_account", "messenger": "page"}
    assert items[0]["payload"]["object"] == expected_object.get(service, "instagram")
    text, sender = received_text(service, items[0]["payload"])
    assert text == f"hello {MARKER}"
    assert sender["id"].isdigit()  # a stable provider-scoped native id, not the URI

    # The simulated user's client says "delivered", as a real one does.
    receipts = await eventually(lambda: events_of(client, "acme", "receipt"))
    assert receipts[0] == {
        "event_id": receipts[0]["event_id"],
        "type": "receipt",
        "message_id": body["id"],
        "from": peer,
        "to": alice.uri,
        "status": "delivered",
        "at": receipts[0]["at"],
    }

    # The sandbox user answers: encrypted to Alice with the session Alice started.
    response = await client.post(
        "/sandbox/v1/send",
        json={
            "from": peer,
            "to": alice.uri,
            "content": {
                "nestedPart": {
                    "cardinality": "single",
                    "contentType": "text/plain;charset=utf-8",
                    "content": "aGkgYmFjaw",  # "hi back", base64url
                }
            },
        },
        headers=admin_headers(),
    )
    assert response.status == 202, await response.text()
    reply_id = (await response.json())["id"]
    messages = await eventually(lambda: events_of(client, "acme", "message"))
    event = messages[0]
    assert event["id"] == reply_id
    assert (event["from"], event["to"]) == (peer, alice.uri)
    assert "content" not in event
    native = alice.decrypt(event["encrypted"])
    assert native == NATIVE_TEXT[service] | (
        {"type": "text", "text": {"body": "hi back"}}
        if service == "whatsapp"
        else {"text": "hi back"}
    )


async def test_plaintext_mimi_content_to_instagram_is_translated_by_the_gateway(
    brclient: Any,
) -> None:
    client = brclient
    peer = await sandbox_user(client, "instagram", "17841400000000001")
    alice = ThirdPartyUser(client, "acme", "alice")
    content = {
        "nestedPart": {
            "cardinality": "single",
            "contentType": "text/plain;charset=utf-8",
            "content": "aGVsbG8",  # "hello"
        }
    }
    response = await alice.send(alice.message(peer, content=content))
    assert response.status == 202, await response.text()
    items = await eventually(lambda: inbox(client, peer))
    assert received_text("instagram", items[0]["payload"])[0] == "hello"


async def test_delivered_payloads_are_dropped_and_never_stored_in_clear(
    brclient: Any, tmp_path: Path
) -> None:
    client = brclient
    peer = await sandbox_user(client, "whatsapp", "4915100000001")
    alice = ThirdPartyUser(client, "acme", "alice")
    await alice.publish_keys()
    encrypted = await alice.encrypt_for(peer, NATIVE_TEXT["whatsapp"])
    response = await alice.send(alice.message(peer, encrypted=encrypted))
    gateway_id = (await response.json())["id"]
    await eventually(lambda: inbox(client, peer))
    store = client.app[STORE]

    async def delivered() -> Any:
        row = await store.fetchrow(
            "SELECT status, payload FROM relay_messages WHERE id = $1", gateway_id
        )
        return row if row["status"] == "delivered" else None

    row = await eventually(delivered)
    assert row["payload"] is None  # only the envelope stays (Art. 7(8))
    for path in tmp_path.rglob("*"):  # the data dir and the SQLite files
        assert not path.is_file() or MARKER.encode() not in path.read_bytes()


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _single(content_type: str, data: bytes, **part: Any) -> dict[str, Any]:
    nested = {"cardinality": "single", "contentType": content_type, "content": _b64u(data)}
    return {"nestedPart": nested | part}


TARGET = derived_message_id("any", "target")  # the MIMI id the test gives the first message
SAMPLES: dict[str, dict[str, Any]] = {
    "text": _single("text/plain;charset=utf-8", b"hello"),
    "markdown": _single("text/markdown;variant=GFM-MIMI", b"*hello*"),
    "image": {
        "nestedPart": {
            "cardinality": "external",
            "contentType": "image/jpeg",
            "url": "https://gateway.example/v1/media/m1",
            "size": 1000,
            "encAlg": 1,
            "key": _b64u(bytes(32)),
            "nonce": _b64u(bytes(12)),
            "hashAlg": 1,
            "contentHash": _b64u(bytes(32)),
            "description": "a cat",
            "filename": "cat.jpg",
        }
    },
    "reply": _single("text/plain;charset=utf-8", b"re: hello") | {"inReplyTo": _b64u(TARGET)},
    "reaction": _single("text/plain;charset=utf-8", "👍".encode(), disposition="reaction")
    | {"inReplyTo": _b64u(TARGET)},
    "location": _single(
        "application/geo+json",
        b'{"type":"Feature","geometry":{"type":"Point","coordinates":[13.4,52.5]},'
        b'"properties":{"name":"Berlin"}}',
    ),
}
CASES = [
    (service, kind)
    for service in ("whatsapp", "messenger", "instagram")
    for kind in SAMPLES
    if kind != "location" or service == "whatsapp"
]


async def test_each_content_type_reaches_the_sandbox_user_decrypted(brclient: Any) -> None:
    """Per service and content type: translate (as the SDK does), encrypt, send, read back."""
    client = brclient
    for n, service in enumerate(("whatsapp", "messenger", "instagram")):
        peer = await sandbox_user(client, service, f"1000{n}")
        alice = ThirdPartyUser(client, "acme", f"alice{n}")
        await alice.publish_keys()
        translator = TRANSLATORS[service]
        refs = MemoryMessageRefs()
        kinds = [kind for s, kind in CASES if s == service]
        for i, kind in enumerate(kinds):
            content = content_from_json(SAMPLES[kind])
            (native,) = translator.content_to_native(content, refs=refs)
            response = await alice.send(
                alice.message(peer, encrypted=await alice.encrypt_for(peer, native))
            )
            assert response.status == 202, (service, kind, await response.text())
            items = await eventually(lambda i=i, peer=peer: _at_least(client, peer, i + 1))
            payload = items[i]["payload"]
            (event,) = translator.webhook_to_neutral(payload, refs=refs)
            assert event.envelope.recipient == peer
            assert event.content is not None
            got = msgspec.structs.replace(event.content, salt=content.salt)
            assert got == content, (service, kind)
            if i == 0:  # later messages reply and react to this one, by its native id
                native_id = event.envelope.id
                refs.remember(service, native_id, TARGET)


async def _at_least(client: Any, uri: str, n: int) -> list[dict[str, Any]] | None:
    items = await inbox(client, uri)
    return items if len(items) >= n else None
