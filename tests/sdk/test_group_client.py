"""The SDK in groups against the real gateway, on both backends: a group hosted on WhatsApp with
a user of this provider, two sandbox WhatsApp users and a user of a second provider; messages
both ways, media, a removal with its rotation, and leaving."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from gateway.content import content_to_json
from gateway.sdk import GroupChange, InteropClient, Message
from gateway.sdk import content as c
from tests.sdk.conftest import Gateway, SdkFactory


async def group_messages(sdk: InteropClient, n: int) -> list[Message]:
    """The next `n` group messages the SDK yields (room keys are imported on the way)."""
    found: list[Message] = []
    deadline = time.monotonic() + 10
    while len(found) < n and time.monotonic() < deadline:
        async for event in sdk.events(wait=1, stop_when_idle=True):
            if isinstance(event, Message) and event.group is not None:
                found.append(event)
    assert len(found) == n, found
    return found


async def inbox_texts(gateway: Gateway, uri: str) -> list[str]:
    texts = []
    for item in await gateway.inbox(uri):
        for change in item["payload"]["entry"][0]["changes"]:
            for msg in change["value"].get("messages", []):
                if "group_id" in msg and msg["type"] == "text":
                    texts.append(msg["text"]["body"])
    return texts


async def until(check: Any) -> Any:
    deadline = time.monotonic() + 10
    while True:
        got = await check()
        if got or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.05)


async def test_a_group_across_two_providers_and_whatsapp(
    backend_gateway: Gateway, backend_onboard_sdk: SdkFactory
) -> None:
    gateway = backend_gateway
    acme = await backend_onboard_sdk("acme")
    globex = await backend_onboard_sdk("globex")
    consent = [acme.client_id, globex.client_id]
    wanda = await gateway.sandbox_user("4915100000001", consent, "Wanda")
    walter = await gateway.sandbox_user("4915100000002", consent, "Walter")
    await acme.publish_keys("alice")
    await globex.publish_keys("bob")
    bob = globex.uri("bob")

    state = await acme.create_group("alice", "whatsapp", "Hiking", [wanda, walter, bob])
    group = state["group"]
    assert state["epoch"] == 0 and len(state["members"]) == 4
    changes = [
        e async for e in globex.events(wait=1, stop_when_idle=True) if isinstance(e, GroupChange)
    ]
    assert [(e.epoch, e.by) for e in changes] == [(0, acme.uri("alice"))]

    await acme.send_group_text("alice", group, "Saturday at 8?")
    [got] = await group_messages(globex, 1)
    assert (got.group, got.sender, got.recipient) == (group, acme.uri("alice"), bob)
    assert got.text == "Saturday at 8?"
    assert "Saturday" not in str(got.raw)  # Megolm ciphertext only
    assert await until(lambda: _has(gateway, wanda, "Saturday at 8?"))

    # Bob answers with an image; Wanda writes too: alice reads both, decrypted.
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(100))
    await globex.send_group_media("bob", group, png, content_type="image/png", caption="Map")
    await gateway.admin("POST", "/sandbox/v1/send", json={
        "from": wanda, "to": group, "content": content_to_json(c.text("I'm in")),
    })  # fmt: skip
    received = await group_messages(acme, 2)
    by_sender = {m.sender: m for m in received}
    assert by_sender[wanda].text == "I'm in"
    [image] = by_sender[bob].attachments
    assert await acme.download_media(image) == png

    # Walter is removed: the next message goes under a new session he never gets.
    removed = await acme.remove_members("alice", group, [walter])
    assert removed["epoch"] == 1
    await acme.send_group_text("alice", group, "Walter can't read this")
    # Bob's provider has Wanda's message from before, then this one.
    assert [m.text for m in await group_messages(globex, 2)] == [
        "I'm in",
        "Walter can't read this",
    ]
    assert await until(lambda: _has(gateway, wanda, "Walter can't read this"))
    assert "Walter can't read this" not in await inbox_texts(gateway, walter)

    # Bob leaves; alice's next send rotates again (the SDK follows the epoch by itself).
    left = await globex.leave("bob", group)
    assert left["epoch"] == 2
    changes = [e async for e in acme.events(wait=1, stop_when_idle=True)
               if isinstance(e, GroupChange)]  # fmt: skip
    assert [(e.epoch, e.removed) for e in changes] == [(1, [walter]), (2, [bob])]
    await acme.send_group_text("alice", group, "just us")
    assert await until(lambda: _has(gateway, wanda, "just us"))
    assert [m async for m in globex.events(wait=1, stop_when_idle=True)
            if isinstance(m, Message)] == []  # fmt: skip


async def test_a_stale_session_is_replaced_and_sent_again(
    gateway: Gateway, onboard_sdk: SdkFactory
) -> None:
    acme = await onboard_sdk("acme")
    wanda = await gateway.sandbox_user("4915100000003", [acme.client_id], "Wanda")
    await acme.publish_keys("alice")
    await acme.publish_keys("carol")
    group = (await acme.create_group("alice", "whatsapp", "G", [wanda]))["group"]
    await acme.send_group_text("alice", group, "one")
    # Another client of the same provider adds carol: this SDK's cached epoch is now old.
    path = acme.state.db_path.with_name("other.db")
    other = InteropClient(
        gateway.base, acme.client_id, acme.tokens.key, path, acme.state.key, session=gateway.http
    )
    try:
        await other.add_members("alice", group, [acme.uri("carol")])
    finally:
        other.state.close()
    sent = await acme.send_group_text("alice", group, "two")  # 409 stale, new session, again
    assert sent.id
    assert await until(lambda: _has(gateway, wanda, "two"))
    carol_reads = await group_messages(acme, 1)  # carol is ours: she decrypts "two" only
    assert [(m.recipient, m.text) for m in carol_reads] == [(acme.uri("carol"), "two")]


async def _has(gateway: Gateway, uri: str, text: str) -> bool:
    return text in await inbox_texts(gateway, uri)
