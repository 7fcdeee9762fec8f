"""`HttpPlatform.deliver_group` against a fake service endpoint run in the test (DESIGN §4.10)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.config import HttpPlatformConfig, PlatformEndpoint
from gateway.platforms.base import GroupOutgoing, PermanentDelivery, RetryableDelivery
from gateway.platforms.http import HttpPlatform
from gateway.store import Store

BOB = "mimi://acme/u/bob"
WA = "mimi://whatsapp/u/4915100000001"
MS = "mimi://messenger/u/psid1"
ID_KEY = bytes(32)


class FakeService:
    """Records what each service's send URL receives; `status` answers it."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.status = 200
        self.app = web.Application()
        self.app.router.add_post("/{service}/messages", self.messages)

    async def messages(self, request: web.Request) -> web.Response:
        if self.status != 200:
            return web.json_response({"error": "detail"}, status=self.status)
        self.received.append((request.match_info["service"], await request.json()))
        return web.json_response({"messages": [{"id": "wamid.G1"}]})


@pytest.fixture
async def service(
    store: Store, aiohttp_server: Any
) -> AsyncIterator[tuple[HttpPlatform, FakeService]]:
    fake = FakeService()
    server = await aiohttp_server(fake.app)
    services = {
        name: PlatformEndpoint(url=str(server.make_url(f"/{name}/messages")), app_secret="s")
        for name in ("whatsapp", "messenger")
    }
    config = HttpPlatformConfig(timeout_s=2, services=services)
    async with aiohttp.ClientSession() as session:
        yield HttpPlatform(config, store, session, id_key=ID_KEY), fake


def item(kind: Any, payload: dict[str, Any], **over: Any) -> GroupOutgoing:
    fields = {
        "id": "g1", "kind": kind, "service": "whatsapp", "group": "mimi://whatsapp/g/G1",
        "sender": BOB, "recipient": WA, "sent_at": 1_700_000_000_000, "payload": payload,
    } | over  # fmt: skip
    return GroupOutgoing(**fields)


MEGOLM = {"protocol": "megolm.v1", "session_id": "s1", "body": "AAAA", "sender_key": "k"}
OLM = {"protocol": "olm.v1", "type": 0, "body": "AAAA", "sender_key": "k"}


async def test_group_messages_go_out_as_native_group_sends(
    service: tuple[HttpPlatform, FakeService],
) -> None:
    platform, fake = service
    await platform.deliver_group(item("group_message", {"encrypted": MEGOLM}))
    await platform.deliver_group(
        item("group_message", {"native": [{"type": "text", "text": {"body": "hi"}}]})
    )
    group = "mimi://messenger/g/T1"
    await platform.deliver_group(
        item("group_message", {"native": [{"text": "yo"}]}, service="messenger", group=group,
             recipient=MS)
    )  # fmt: skip
    (s1, wa_enc), (s2, wa_text), (s3, ms_text) = fake.received
    assert (s1, s2, s3) == ("whatsapp", "whatsapp", "messenger")
    bob_id = platform.native_id("whatsapp", BOB)
    assert wa_enc == {
        "messaging_product": "whatsapp", "recipient_type": "group", "to": "G1", "from": bob_id,
        "recipient_participant_id": "4915100000001", "type": "encrypted", "encrypted": MEGOLM,
    }  # fmt: skip
    assert wa_text["type"] == "text" and wa_text["text"] == {"body": "hi"}
    assert wa_text["recipient_type"] == "group" and wa_text["to"] == "G1"
    assert ms_text["recipient"] == {"id": "psid1"}
    assert ms_text["thread"] == {"id": "T1", "thread_type": "GROUP"}
    assert ms_text["message"] == {"text": "yo"}


async def test_room_keys_and_membership_go_out_as_typed_objects(
    service: tuple[HttpPlatform, FakeService],
) -> None:
    platform, fake = service
    await platform.deliver_group(item("room_key", {"session_id": "s1", "encrypted": OLM}))
    members = [{"uri": WA, "role": "admin"}, {"uri": BOB, "role": "member"}]
    change = {"by": WA, "added": [BOB], "removed": [], "epoch": 2, "members": members}
    await platform.deliver_group(item("group_membership", change, sender=WA))
    (_, key), (_, membership) = fake.received
    bob_id = platform.native_id("whatsapp", BOB)
    assert key == {"type": "room_key", "group": "G1", "from": bob_id, "to": "4915100000001",
                   "session_id": "s1", "encrypted": OLM}  # fmt: skip
    assert membership == {
        "type": "group_membership", "group": "G1", "to": "4915100000001",
        "by": "4915100000001", "added": [bob_id], "removed": [], "epoch": 2,
        "members": [{"id": "4915100000001", "role": "admin"}, {"id": bob_id, "role": "member"}],
    }  # fmt: skip


async def test_refusals_and_outages(service: tuple[HttpPlatform, FakeService]) -> None:
    platform, fake = service
    with pytest.raises(PermanentDelivery, match="no_endpoint"):
        await platform.deliver_group(
            item("group_message", {"encrypted": MEGOLM}, service="instagram",
                 group="mimi://instagram/g/I1", recipient="mimi://instagram/u/1")
        )  # fmt: skip
    with pytest.raises(PermanentDelivery, match="invalid_group_item"):
        await platform.deliver_group(item("room_key", {"encrypted": OLM}))  # no session_id
    with pytest.raises(PermanentDelivery, match="invalid_group_item"):
        await platform.deliver_group(
            item("group_message", {"encrypted": MEGOLM}, group="mimi://messenger/g/T1")
        )
    fake.status = 503
    with pytest.raises(RetryableDelivery):
        await platform.deliver_group(item("group_message", {"encrypted": MEGOLM}))
    fake.status = 400
    with pytest.raises(PermanentDelivery, match="platform_refused_400"):
        await platform.deliver_group(item("group_message", {"encrypted": MEGOLM}))
    assert fake.received == []
