"""The SDK against the real gateway: onboarding, keys, every kind of send, events, restarts."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec

from gateway.content import content_to_json
from gateway.http.app_keys import STORE
from gateway.sdk import InteropClient, Message, Notice, Receipt
from gateway.sdk import content as c
from gateway.translate.whatsapp import wamid
from tests.sdk.conftest import Gateway, SdkFactory

WA_ID = "4915112345678"


async def wait_inbox(gateway: Gateway, uri: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        items = await gateway.inbox(uri)
        if len(items) >= count or time.monotonic() > deadline:
            assert len(items) >= count, items
            return items
        await asyncio.sleep(0.02)


def native_of(item: dict[str, Any]) -> dict[str, Any]:
    value = item["payload"]["entry"][0]["changes"][0]["value"]
    return dict(value.get("messages", value.get("statuses"))[0])


async def next_of(sdk: InteropClient, kind: type) -> Any:
    async for event in sdk.events(wait=2, stop_when_idle=True):
        if isinstance(event, kind):
            return event
    raise AssertionError(f"no {kind.__name__} event")


async def wa_says(gateway: Gateway, wa: str, to: str, text: str) -> None:
    body = {"from": wa, "to": to, "content": content_to_json(c.text(text))}
    await gateway.admin("POST", "/sandbox/v1/send", json=body)


async def test_a_conversation_with_a_whatsapp_user(gateway: Gateway, onboard_sdk: SdkFactory):
    sdk = await onboard_sdk()
    wa = await gateway.sandbox_user(WA_ID, [sdk.client_id])
    published = await sdk.publish_keys("alice")
    assert published["one_time_key_count"] == 50 and published["fallback_key"] is True

    sent = await sdk.send_text("alice", wa, "Hallo Wanda")
    assert set(sent.envelope["encrypted"]) == {"protocol", "type", "body", "sender_key"}
    assert "Hallo" not in msgspec.json.encode(sent.envelope).decode()
    items = await wait_inbox(gateway, wa, 1)
    first = native_of(items[0])
    assert first["type"] == "text" and first["text"] == {"body": "Hallo Wanda"}
    assert first["id"] == wamid(sent.id)

    png = b"\x89PNG\r\n\x1a\n" + bytes(range(200))
    await sdk.send_media("alice", wa, png, content_type="image/png", caption="Café")
    image = native_of((await wait_inbox(gateway, wa, 2))[1])
    assert image["type"] == "image" and image["image"]["caption"] == "Café"
    assert image["image"]["url"].startswith(f"{gateway.base}/v1/media/")

    await wa_says(gateway, wa, sdk.uri("alice"), "Gern!")
    message: Message = await next_of(sdk, Message)
    assert message.sender == wa and message.text == "Gern!"
    assert message.native == {"type": "text", "text": {"body": "Gern!"}}

    await sdk.react("alice", wa, message.id, "👍")
    await sdk.reply("alice", wa, message.id, "Bis gleich")
    await sdk.edit("alice", wa, sent.id, "Hallo Wanda!")
    items = await wait_inbox(gateway, wa, 5)
    natives = [native_of(i) for i in items[2:5]]
    assert natives[0]["reaction"] == {"message_id": wamid(message.id), "emoji": "👍"}
    assert natives[1]["context"]["id"] == wamid(message.id)
    assert natives[1]["text"] == {"body": "Bis gleich"}
    assert natives[2]["edit"]["original_message_id"] == wamid(sent.id)

    await sdk.receipt("alice", wa, message.id, "read")
    status = native_of((await wait_inbox(gateway, wa, 6))[5])
    assert status["status"] == "read" and status["id"] == wamid(message.id)
    receipt: Receipt = await next_of(sdk, Receipt)
    assert receipt.status == "delivered" and receipt.sender == wa
    assert receipt.message_id == sent.client_message_id
    await sdk.typing("alice", wa, "on")


async def test_sessions_survive_a_restart(gateway: Gateway, onboard_sdk: SdkFactory):
    sdk = await onboard_sdk()
    wa = await gateway.sandbox_user(WA_ID, [sdk.client_id])
    await sdk.publish_keys("alice", 5)
    first = await sdk.send_text("alice", wa, "eins")
    assert first.envelope["encrypted"]["type"] == 0
    await wa_says(gateway, wa, sdk.uri("alice"), "zwei")
    assert (await next_of(sdk, Message)).text == "zwei"
    sdk.state.close()
    again = await onboard_sdk("acme-restarted", key=sdk.tokens.key, client_id=sdk.client_id)
    again.state = type(sdk.state)(sdk.state.db_path, sdk.state.key)
    third = await again.send_text("alice", wa, "drei")
    # A normal (type 1) message: the ratchet continued from the pickled session.
    assert third.envelope["encrypted"]["type"] == 1
    items = await wait_inbox(gateway, wa, 2)
    assert native_of(items[1])["text"] == {"body": "drei"}
    await wa_says(gateway, wa, again.uri("alice"), "vier")
    assert (await next_of(again, Message)).text == "vier"


async def test_keys_low_makes_the_sdk_replenish(gateway: Gateway, onboard_sdk: SdkFactory):
    sdk = await onboard_sdk()
    await sdk.publish_keys("alice", 10)
    threshold = gateway.config.keys.low_threshold
    # Only the user's own provider may claim its keys (no group shared with anyone else).
    for _ in range(10 - threshold + 1):
        await sdk._request("GET", "/v1/keys", params={"user": sdk.uri("alice")})
    notice: Notice = await next_of(sdk, Notice)
    assert notice.type == "keys_low"
    count = await gateway.app[STORE].fetchval(
        "SELECT count(*) FROM e2ee_one_time_keys WHERE user_uri = $1", sdk.uri("alice")
    )
    assert count == threshold - 1 + sdk.one_time_keys


async def test_tokens_are_refreshed_before_they_expire(gateway: Gateway, onboard_sdk):
    sdk = await onboard_sdk()
    token = await sdk.tokens.token()
    assert await sdk.tokens.token() == token
    sdk.tokens._expires_at = time.monotonic() + 30  # inside the refresh margin
    fresh = await sdk.tokens.token()
    assert fresh != token
    await sdk.publish_keys("alice", 1)  # the fresh token works


async def test_rate_limited_requests_are_retried_after_the_pause(
    gateway: Gateway, onboard_sdk: SdkFactory
) -> None:
    sdk = await onboard_sdk()
    await sdk.publish_keys("alice", 60)
    burst = gateway.config.limits.keys.burst
    # More claims than the burst: the SDK waits out each 429 instead of failing.
    results = await asyncio.gather(
        *(sdk._request("GET", "/v1/keys", params={"user": sdk.uri("alice")})
          for _ in range(burst + 3))
    )  # fmt: skip
    assert len({r["one_time_key"]["key_id"] for r in results if r["one_time_key"]}) == 60
