"""Stopping the delivery worker: deliveries under way finish, the rest go back to the outbox."""

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
from tests.service.test_outbox_replicas import unused_sealer


class SlowPlatform:
    """Takes `delay_s` per delivery; remembers what it was handed and what it finished."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.started: list[str] = []
        self.delivered: list[str] = []

    async def deliver(self, item: Outgoing) -> None:
        self.started.append(item.id)
        await asyncio.sleep(self.delay_s)
        self.delivered.append(item.id)


class Consenting:
    async def allows(self, user_uri: str, client_id: str) -> bool:
        return True


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await open_store(store_url)
    yield opened
    await opened.close()


async def enqueue(store: Store, n: int) -> None:
    """n accepted messages, each in its own conversation (so all are claimable at once)."""
    at = int(time.time() * 1000)

    async def unit(tx: Tx) -> None:
        for i in range(n):
            sender, recipient = f"mimi://acme/u/s{i}", f"mimi://whatsapp/u/4915100000{i}"
            await tx.execute(
                "INSERT INTO relay_messages (id, client_id, client_msg_id, digest, direction, "
                "kind, service, sender, recipient, sent_at, accepted_at, size, status, payload) "
                "VALUES ($1, 'acme', $1, 'd', 'outbound', 'message', 'whatsapp', $2, $3, $4, "
                "$4, 2, 'accepted', '{}')",
                f"m{i}", sender, recipient, at,
            )  # fmt: skip
            await tx.execute(
                "INSERT INTO relay_outbox (message_id, conversation, service, attempts, "
                "next_attempt_at, lease_until, created_at) VALUES ($1, $2, 'whatsapp', 0, $3, "
                "0, $3)",
                f"m{i}", f"{sender}\n{recipient}", at,
            )  # fmt: skip

    await store.write("test_enqueue", unit)


def worker(store: Store, platform: Any) -> DeliveryWorker:
    config = RelayConfig(lease_s=300.0, poll_interval_s=0.05)
    consent: Any = Consenting()
    return DeliveryWorker(
        store, platform, consent, EventQueue(store), config, audit_events=RecordingAudit(),
        replica_id="this-replica", sealer=unused_sealer(),
    )  # fmt: skip


async def outbox_rows(store: Store) -> list[Any]:
    return await store.fetch("SELECT message_id, lease_until FROM relay_outbox ORDER BY seq")


async def wait_for(condition: Any) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_deliveries_under_way_finish_within_the_drain(store: Store) -> None:
    await enqueue(store, 3)
    platform = SlowPlatform(delay_s=0.2)
    delivery = worker(store, platform)
    await delivery.start()
    await wait_for(lambda: len(platform.started) == 3)
    await delivery.stop(drain_s=5)
    assert sorted(platform.delivered) == ["m0", "m1", "m2"]
    assert await outbox_rows(store) == []


async def test_unfinished_deliveries_are_handed_back_to_the_outbox(store: Store) -> None:
    await enqueue(store, 3)
    platform = SlowPlatform(delay_s=60)
    delivery = worker(store, platform)
    await delivery.start()
    await wait_for(lambda: len(platform.started) == 3)
    held = await outbox_rows(store)
    assert all(row["lease_until"] > time.time() * 1000 for row in held)  # claimed for 300 s
    async with asyncio.timeout(2):  # the 60 s deliveries are not waited for
        await delivery.stop(drain_s=0.2)
    assert platform.delivered == []
    rows = await outbox_rows(store)
    assert [row["message_id"] for row in rows] == ["m0", "m1", "m2"]
    assert [row["lease_until"] for row in rows] == [0, 0, 0]  # claimable again at once
    # ... and the next worker delivers them without waiting out the lease.
    platform = SlowPlatform(delay_s=0)
    successor = worker(store, platform)
    await successor.start()
    await wait_for(lambda: len(platform.delivered) == 3)
    await successor.stop()


# Only PostgreSQL: on SQLite one process holds every lease, so there is no other replica's.
@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
async def test_only_this_replicas_leases_are_handed_back(store: Store) -> None:
    await enqueue(store, 2)
    platform = SlowPlatform(delay_s=60)
    delivery = worker(store, platform)
    await delivery.start()
    await wait_for(lambda: len(platform.started) == 2)

    async def other_replica_claims_one(tx: Tx) -> None:
        await tx.execute(
            "UPDATE relay_outbox SET claimed_by = 'other', lease_until = $1"
            " WHERE message_id = 'm1'",
            int(time.time() * 1000) + 300_000,
        )

    await store.write("test_other_replica", other_replica_claims_one)
    await delivery.stop(drain_s=0)
    leases = {row["message_id"]: row["lease_until"] for row in await outbox_rows(store)}
    assert leases["m0"] == 0
    assert leases["m1"] > time.time() * 1000
