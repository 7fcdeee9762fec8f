"""POST /v1/messages, /v1/receipts, /v1/typing, /v1/lookup: idempotency and every refusal."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import structlog

from gateway.http.app_keys import STORE
from tests.conftest import admin_headers, assert_problem
from tests.http.providers import provider_headers
from tests.http.relay_support import (
    ThirdPartyUser,
    events_of,
    eventually,
    inbox,
    sandbox_user,
)
from tests.http.test_relay_roundtrip import NATIVE_TEXT, brclient  # noqa: F401 (fixture)

TEXT = {
    "nestedPart": {
        "cardinality": "single",
        "contentType": "text/plain;charset=utf-8",
        "content": "aGk",
    }
}


async def problem(response: Any, status: int, type_: str, field: str | None = None) -> None:
    body = await response.json()
    assert_problem(response.status, response.content_type, body, status, type_)
    if field is not None:
        assert body["field"] == field


@pytest.fixture
async def chat(brclient: Any) -> tuple[Any, ThirdPartyUser, str]:  # noqa: F811
    peer = await sandbox_user(brclient, "whatsapp", "4915112345678")
    alice = ThirdPartyUser(brclient, "acme", "alice")
    await alice.publish_keys()
    return brclient, alice, peer


async def test_a_retry_returns_the_same_id_and_delivers_once(chat: Any) -> None:
    client, alice, peer = chat
    body = alice.message(peer, encrypted=await alice.encrypt_for(peer, NATIVE_TEXT["whatsapp"]))
    first = await alice.send(body)
    assert first.status == 202
    # A retry with the same fields in another order and spacing is the same body.
    second = await client.post(
        "/v1/messages",
        data=json.dumps(dict(reversed(list(body.items()))), indent=2),
        headers=alice.headers | {"Content-Type": "application/json"},
    )
    assert second.status == 202
    assert (await second.json())["id"] == (await first.json())["id"]
    await eventually(lambda: inbox(client, peer))
    third = await alice.send(body)  # after delivery too
    assert (await third.json())["id"] == (await first.json())["id"]
    assert len(await inbox(client, peer)) == 1
    rows = await client.app[STORE].fetchval(
        "SELECT COUNT(*) FROM relay_messages WHERE direction = 'outbound'"
    )
    assert rows == 1


async def test_same_id_with_another_body_is_a_conflict(chat: Any) -> None:
    _client, alice, peer = chat
    body = alice.message(peer, encrypted=await alice.encrypt_for(peer, NATIVE_TEXT["whatsapp"]))
    assert (await alice.send(body)).status == 202
    other = body | {"sent_at": body["sent_at"] + 1}
    await problem(await alice.send(other), 409, "/problems/idempotency-conflict", "$.id")


async def test_from_must_be_the_callers_own_user(chat: Any) -> None:
    _client, alice, peer = chat
    body = alice.message(peer, encrypted=await alice.encrypt_for(peer, NATIVE_TEXT["whatsapp"]))
    response = await alice.send(body | {"from": "mimi://other/u/mallory"})
    await problem(response, 403, "/problems/sender-not-owned", "$.from")
    response = await alice.send(body | {"from": "mimi://whatsapp/u/4915100000000"})
    await problem(response, 403, "/problems/sender-not-owned", "$.from")


async def test_unknown_and_non_consenting_recipients_look_the_same(chat: Any) -> None:
    client, alice, _peer = chat
    shy = await sandbox_user(client, "messenger", "555", consent=["someone-else"])
    encrypted = {"protocol": "olm.v1", "type": 0, "body": "AAAA", "sender_key": "x"}
    bodies = []
    for to in (shy, "mimi://messenger/u/nobody", "mimi://acme/u/bob"):
        response = await alice.send(alice.message(to, encrypted=encrypted))
        bodies.append(await response.json())
        await problem(response, 404, "/problems/unknown-recipient", "$.to")
    assert bodies[0]["detail"] == bodies[1]["detail"]
    # Not a user URI at all: a syntax error, which says nothing about who exists.
    response = await alice.send(alice.message("tel:+49151", encrypted=encrypted))
    await problem(response, 422, "/problems/validation", "$.to")


async def test_plaintext_to_an_e2ee_required_service_is_refused(chat: Any) -> None:
    client, alice, peer = chat
    response = await alice.send(alice.message(peer, content=TEXT))
    await problem(response, 422, "/problems/e2ee-required", "$.encrypted")
    assert await client.app[STORE].fetchval("SELECT COUNT(*) FROM relay_messages") == 0


async def test_plaintext_over_the_instagram_limit_names_the_field(brclient: Any) -> None:  # noqa: F811
    peer = await sandbox_user(brclient, "instagram", "1784")
    alice = ThirdPartyUser(brclient, "acme", "alice")
    long = base64.urlsafe_b64encode("é".encode() * 501).rstrip(b"=").decode()  # 1002 bytes
    content = {"nestedPart": TEXT["nestedPart"] | {"content": long}}
    response = await alice.send(alice.message(peer, content=content))
    await problem(response, 422, "/problems/content-rejected")
    assert (await response.json())["field"].startswith("$.content.nestedPart")
    response = await alice.send(alice.message(peer, content={"nestedPart": {}}))
    await problem(response, 422, "/problems/content-rejected")
    response = await alice.send(alice.message(peer, content_cbor="!!"))
    await problem(response, 422, "/problems/content-rejected", "$.content_cbor")


async def test_ciphertext_checks(chat: Any) -> None:
    _client, alice, peer = chat
    big = base64.b64encode(bytes(64 * 1024 + 1)).decode()
    encrypted = {"protocol": "olm.v1", "type": 1, "body": big, "sender_key": "k"}
    response = await alice.send(alice.message(peer, encrypted=encrypted))
    await problem(response, 422, "/problems/limit-exceeded", "$.encrypted.body")
    response = await alice.send(alice.message(peer, encrypted=encrypted | {"body": "no base64!"}))
    await problem(response, 422, "/problems/validation", "$.encrypted.body")
    response = await alice.send(alice.message(peer, encrypted=encrypted | {"protocol": "x"}))
    await problem(response, 422, "/problems/validation", "$.encrypted.protocol")
    both = alice.message(peer, encrypted=encrypted | {"body": "AAAA"}, content=TEXT)
    await problem(await alice.send(both), 422, "/problems/validation", "$.content")
    neither = alice.message(peer)
    await problem(await alice.send(neither), 422, "/problems/validation", "$.encrypted")
    await problem(await alice.send({"id": "x"}), 422, "/problems/validation", "$.from")


async def test_scope_and_authentication(chat: Any) -> None:
    client, alice, peer = chat
    body = alice.message(peer, encrypted={"protocol": "olm.v1", "type": 1, "body": "AA==",
                                          "sender_key": "k"})  # fmt: skip
    response = await client.post("/v1/messages", json=body)
    await problem(response, 401, "/problems/unauthorized")
    for path in ("/v1/messages", "/v1/receipts", "/v1/typing"):
        response = await client.post(path, json=body, headers=provider_headers("acme", ["keys"]))
        await problem(response, 403, "/problems/insufficient-scope")
    response = await client.post(
        "/v1/lookup", json={"service": "whatsapp", "identifiers": ["1"]},
        headers=provider_headers("acme", ["messages"]),
    )  # fmt: skip
    await problem(response, 403, "/problems/insufficient-scope")


async def test_receipts_and_typing_reach_the_platform_user(chat: Any) -> None:
    client, alice, peer = chat
    response = await client.post(
        "/sandbox/v1/send", json={"from": peer, "to": alice.uri, "content": TEXT},
        headers=admin_headers(),
    )  # fmt: skip
    (message,) = await eventually(lambda: events_of(client, "acme", "message"))
    assert message["id"] == (await response.json())["id"]
    receipt = {"message_id": message["id"], "from": alice.uri, "to": peer, "status": "read"}
    first = await client.post("/v1/receipts", json=receipt, headers=alice.headers)
    assert first.status == 202
    again = await client.post("/v1/receipts", json=receipt, headers=alice.headers)
    assert (await again.json())["id"] == (await first.json())["id"]
    typing = {"from": alice.uri, "to": peer, "state": "on"}
    assert (await client.post("/v1/typing", json=typing, headers=alice.headers)).status == 202
    items = await eventually(lambda: inbox(client, peer))
    statuses = items[0]["payload"]["entry"][0]["changes"][0]["value"]["statuses"]
    assert statuses[0]["status"] == "read"
    bad = await client.post("/v1/typing", json=typing | {"state": "maybe"}, headers=alice.headers)
    await problem(bad, 422, "/problems/validation", "$.state")


async def test_lookup_answers_only_consenting_users(chat: Any) -> None:
    client, alice, peer = chat
    await sandbox_user(client, "whatsapp", "4915199999999", consent=["other"])
    response = await client.post(
        "/v1/lookup",
        json={"service": "whatsapp", "identifiers": ["+49 151 12345678", "4915199999999", "1"]},
        headers=alice.headers,
    )
    assert response.status == 200
    assert await response.json() == {"users": [{"identifier": "+49 151 12345678", "uri": peer}]}
    response = await client.post(
        "/v1/lookup", json={"service": "sms", "identifiers": []}, headers=alice.headers
    )
    await problem(response, 422, "/problems/validation", "$.service")


async def test_an_accepted_message_is_told_on_its_request_log_line(chat: Any) -> None:
    _, alice, peer = chat
    body = alice.message(peer, encrypted=await alice.encrypt_for(peer, NATIVE_TEXT["whatsapp"]))
    with structlog.testing.capture_logs([structlog.contextvars.merge_contextvars]) as logs:
        assert (await alice.send(body)).status == 202
    lines = [line for line in logs if line.get("route") == "/v1/messages"]
    # One line for the request, carrying what was accepted (never the content or the users).
    assert [line["event"] for line in lines] == ["request_handled"]
    assert (lines[0]["service"], lines[0]["kind"], lines[0]["status"]) == (
        "whatsapp",
        "message",
        202,
    )
    assert lines[0]["size"] > 0
    assert peer not in str(lines) and alice.uri not in str(lines)
