"""Wiring: every collaborator is required at construction; none is set or skipped afterwards."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import UnknownRecipient
from gateway.platforms.base import Inbound, Uplink
from gateway.platforms.ingress import Ingress
from gateway.platforms.sandbox import SandboxPlatform
from gateway.service.delivery import DeliveryWorker
from gateway.service.key_directory import KeyDirectory
from gateway.service.relay import Relay
from tests.service.fakes import RecordingAudit, RecordingQueue, no_platform_users

ANY: Any = object()


async def consents(uri: str, client_id: str) -> bool:
    return True


def directory_args() -> dict[str, Any]:
    return {
        "low_threshold": 1,
        "max_one_time_keys": 10,
        "platform_keys": no_platform_users,
        "consent": consents,
        "events": RecordingQueue(),
        "audit_events": RecordingAudit(),
        "transparency": ANY,
    }


@pytest.mark.parametrize(
    "missing", ["platform_keys", "consent", "events", "audit_events", "transparency"]
)
def test_the_key_directory_cannot_be_built_without_a_collaborator(missing: str) -> None:
    args = directory_args()
    del args[missing]
    with pytest.raises(TypeError, match=missing):
        KeyDirectory(ANY, **args)


def test_the_relay_and_its_workers_cannot_be_built_without_the_audit_log() -> None:
    with pytest.raises(TypeError, match="audit_events"):
        Relay(ANY, ANY, ANY, ANY, ANY, outbox_depth=lambda: 0, on_outbox=lambda: None)
    with pytest.raises(TypeError, match="audit_events"):
        DeliveryWorker(ANY, ANY, ANY, ANY, ANY)


def test_platforms_cannot_be_built_without_the_way_to_the_relay() -> None:
    with pytest.raises(TypeError, match="inbound"):
        SandboxPlatform(ANY, third_party_keys=ANY, set_consent=ANY)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="inbound"):
        Ingress(ANY, ANY)  # type: ignore[call-arg]


async def test_the_key_directory_asks_consent_before_the_connector(tmp_path: Any) -> None:
    asked: list[str] = []

    async def platform_keys(uri: str) -> Any:
        asked.append(uri)
        return None

    async def nobody(uri: str, client_id: str) -> bool:
        return False

    args = directory_args() | {"platform_keys": platform_keys, "consent": nobody}
    keys = KeyDirectory(ANY, **args)
    with pytest.raises(UnknownRecipient):
        await keys.claim("acme", "mimi://whatsapp/u/4915100000001")
    assert asked == []


class Relayed:
    def __init__(self) -> None:
        self.items: list[Inbound] = []

    async def receive(self, item: Inbound) -> str:
        self.items.append(item)
        return "gw_1"


ITEM = Inbound(
    native_id="n1", kind="typing", service="whatsapp", sender="mimi://whatsapp/u/1",
    recipient="mimi://acme/u/bob", sent_at=0, payload={"state": "active"},
)  # fmt: skip


async def test_the_uplink_is_bound_once_and_refuses_traffic_before() -> None:
    uplink = Uplink()
    with pytest.raises(RuntimeError, match="before the relay"):
        await uplink.receive(ITEM)
    with pytest.raises(RuntimeError, match="before the key directory"):
        await uplink.third_party_keys("mimi://acme/u/bob")
    relay = Relayed()
    uplink.bind(relay, no_platform_users)
    assert await uplink.receive(ITEM) == "gw_1"
    assert relay.items == [ITEM]
    assert await uplink.third_party_keys("mimi://acme/u/bob") is None
    with pytest.raises(RuntimeError, match="bound already"):
        uplink.bind(Relayed(), no_platform_users)
