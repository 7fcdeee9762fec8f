"""Delivery rounds overlap: a slow conversation does not hold up the others, and order within
a conversation holds across rounds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.config import RelayConfig
from gateway.platforms.base import Outgoing
from gateway.service.delivery import DeliveryWorker
from gateway.service.events import EventQueue
from gateway.store import Store, Tx, open_store
from tests.service.fakes import RecordingAudit
from tests.service.test_delivery_stop import Consenting
from tests.service.test_outbox_replicas import unused_sealer


class GatedPlatform:
    """Holds every delivery to `held` until `gate` is set; records starts and deliveries."""

    def __init__(self, held: str) -> None:
        self.held = held
        self.gate = asyncio.Event()
        self.started: list[str] = []
        self.delivered: list[str] = []
        self.done: dict[str, asyncio.Event] = {}

    async def deliver(self, item: Outgoing) -> None:
        self.started.append(item.id)
        if item.recipient == self.held:
            await self.gate.wait()
        self.delivered.append(item.id)
        self.arrived(item.id).set()

    def arrived(self, message_id: str) -> asyncio.Event:
        return self.done.setdefault(message_id, asyncio.Event())


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await open_store(store_url)
    yield opened
    await opened.close()


async def enqueue(store: Store, items: list[tuple[str, str]]) -> None:
    """Accepted messages `(id, recipient)` in this order, one conversation per recipient."""
    at = int(time.time() * 1000)

    async def unit(tx: Tx) -> None:
        for message_id, recipient in items:
            sender = "mimi://acme/u/alice"
            await tx.execute(
                "INSERT INTO relay_messages (id, client_id, client_msg_id, digest, direction, "
                "kind, service, sender, recipient, sent_at, accepted_at, size, status, payload) "
                "VALUES ($1, 'acme', $1, 'd', 'outbound', 'message', 'whatsapp', $2, $3, $4, "
                "$4, 2, 'accepted', '{}')",
                message_id, sender, recipient, at,
            )  # fmt: skip
            await tx.execute(
                "INSERT INTO relay_outbox (message_id, conversation, service, attempts, "
                "next_attempt_at, lease_until, created_at) VALUES ($1, $2, 'whatsapp', 0, $3, "
                "0, $3)",
                message_id, f"{sender}\n{recipient}", at,
            )  # fmt: skip

    await store.write("test_enqueue", unit)


async def until(event: asyncio.Event, timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        await event.wait()


async def test_a_held_round_does_not_stop_the_next_and_order_holds(store: Store) -> None:
    slow, fast = "mimi://whatsapp/u/491510000", "mimi://whatsapp/u/491510001"
    await enqueue(store, [("a1", slow), ("b1", fast), ("a2", slow)])
    platform = GatedPlatform(held=slow)
    # One row a round: a1 is a round of its own, held at the platform.
    config = RelayConfig(lease_s=300.0, poll_interval_s=0.05, claim_batch=1)
    consent: Any = Consenting()
    worker = DeliveryWorker(
        store, platform, consent, EventQueue(store), config, audit_events=RecordingAudit(),
        replica_id="this-replica", sealer=unused_sealer(),
    )  # fmt: skip
    await worker.start()
    try:
        await until(platform.arrived("b1"))  # while a1's round is still held
        assert platform.delivered == ["b1"]
        assert "a2" not in platform.started  # behind a1 in its conversation: waits for it
        platform.gate.set()
        await until(platform.arrived("a1"))
        await until(platform.arrived("a2"))
        assert platform.delivered.index("a1") < platform.delivered.index("a2")
    finally:
        platform.gate.set()
        await worker.stop()
