"""The outbox shared by replicas on one PostgreSQL database: each message once, in order.

Each "replica" here is its own PostgresStore (its own writer connection and transactions) with
its own DeliveryWorker and replica id, as two processes would have.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import asyncpg
import pytest

from gateway.config import RelayConfig
from gateway.platforms.base import Outgoing
from gateway.service.consent import ConsentRegistry
from gateway.service.delivery import DeliveryWorker
from gateway.service.events import EventQueue
from gateway.service.payload_seal import PayloadSealer
from gateway.store import Store, Tx, is_lock_not_available, open_store, outbox
from tests.service.fakes import RecordingAudit

CONFIG = RelayConfig(poll_interval_s=0.05, claim_batch=8, concurrency=8, lease_s=30.0)


class RecordingPlatform:
    """Takes a few milliseconds per delivery and remembers who delivered what, when."""

    name = "recording"

    def __init__(self, replica: str, log: list[tuple[str, str, str]]) -> None:
        self.replica = replica
        self.log = log

    async def deliver(self, item: Outgoing) -> None:
        await asyncio.sleep(random.uniform(0.001, 0.004))
        self.log.append((self.replica, item.recipient, item.id))

    async def claim_key_bundle(self, user_uri: str) -> None:
        return None

    async def user_exists(self, user_uri: str) -> bool:
        return True

    async def close(self) -> None:
        pass


async def enqueue(store: Store, conversations: int, per_conversation: int) -> dict[str, list[str]]:
    """Accepted messages interleaved across conversations; returns each one's ids in order."""
    order: dict[str, list[str]] = defaultdict(list)
    now = int(time.time() * 1000)

    async def unit(tx: Tx) -> None:
        for c in range(conversations):
            await tx.execute(
                "INSERT INTO consents (user_uri, client_id, granted_at) VALUES ($1, '*', 0)",
                f"mimi://whatsapp/u/{c}",
            )
        for n in range(per_conversation):
            for c in range(conversations):
                recipient, mid = f"mimi://whatsapp/u/{c}", f"gw_{c}_{n}"
                await tx.execute(
                    "INSERT INTO relay_messages (id, client_id, client_msg_id, digest, "
                    "direction, kind, service, sender, recipient, sent_at, accepted_at, size, "
                    "status, payload) VALUES ($1, 'p', $1, 'd', 'outbound', 'message', "
                    "'whatsapp', 'mimi://p/u/a', $2, $3, $3, 2, 'accepted', '{\"native\":[]}')",
                    mid, recipient, now,
                )  # fmt: skip
                await tx.execute(
                    "INSERT INTO relay_outbox (message_id, conversation, service, attempts, "
                    "next_attempt_at, lease_until, created_at) VALUES ($1, $2, 'whatsapp', 0, "
                    "$3, 0, $3)",
                    mid, f"mimi://p/u/a\n{recipient}", now,
                )  # fmt: skip
                order[recipient].append(mid)

    await store.write("enqueue", unit)
    return order


def worker(store: Store, replica: str, log: list[tuple[str, str, str]]) -> DeliveryWorker:
    queue = EventQueue(store)
    platform = RecordingPlatform(replica, log)
    return DeliveryWorker(
        store, platform, ConsentRegistry(store, queue), queue, CONFIG,
        audit_events=RecordingAudit(), replica_id=replica, sealer=unused_sealer(),
    )  # fmt: skip


def unused_sealer() -> PayloadSealer:
    """A sealer for workers of the plain payloads `enqueue` writes (no key is ever needed)."""
    return PayloadSealer(Path(tempfile.mkdtemp(prefix="payload-keys-")))


async def test_two_replicas_deliver_each_message_once_in_order(postgres_url: str) -> None:
    a = await open_store(postgres_url, pool_size=2)
    b = await open_store(postgres_url, pool_size=2)
    log: list[tuple[str, str, str]] = []
    workers = [worker(a, "replica-a", log), worker(b, "replica-b", log)]
    try:
        order = await enqueue(a, conversations=12, per_conversation=15)
        for w in workers:
            await w.start()
        for _ in range(400):  # 20 s at most
            if not await a.fetchval("SELECT COUNT(*) FROM relay_outbox"):
                break
            await asyncio.sleep(0.05)
        assert await a.fetchval("SELECT COUNT(*) FROM relay_outbox") == 0
    finally:
        for w in workers:
            await w.stop()
        await a.close()
        await b.close()
    ids = [mid for _, _, mid in log]
    assert sorted(ids) == sorted(mid for mids in order.values() for mid in mids)  # each once
    for recipient, mids in order.items():
        assert [mid for _, r, mid in log if r == recipient] == mids  # in order per conversation
    by_replica = {replica for replica, _, _ in log}
    assert by_replica == {"replica-a", "replica-b"}, "both replicas take part"


async def test_a_conversation_waits_for_its_leased_head_until_the_lease_expires(
    postgres_url: str,
) -> None:
    a = await open_store(postgres_url, pool_size=2)
    b = await open_store(postgres_url, pool_size=2)
    try:
        await enqueue(a, conversations=1, per_conversation=2)
        now = int(time.time() * 1000)

        async def claim(replica: str, at: int, lease_ms: int = 1000) -> list[str]:
            async def unit(tx: Tx) -> list[str]:
                rows = await outbox.claim(tx, at, lease_ms, 10, replica)
                return [row.message_id for row in rows]

            store = a if replica == "a" else b
            return await store.write("claim", unit)

        assert await claim("a", now) == ["gw_0_0"]  # then replica a is killed
        assert await claim("b", now + 10) == []  # neither the head nor the message after it
        assert await claim("b", now + 1001) == ["gw_0_0"]  # a's lease expired: taken over

        async def a_gives_up(tx: Tx) -> None:  # a, late, may not reset b's lease
            await outbox.retry_later(tx, 1, 1, now, replica="a")

        await a.write("retry", a_gives_up)
        assert await claim("a", now + 1002) == []
        assert await b.write("release", lambda tx: outbox.release_replica(tx, "a")) == 0
        assert await a.write("release", lambda tx: outbox.release_replica(tx, "b")) == 1
        assert await claim("a", now + 1003) == ["gw_0_0"]  # b restarted: its leases freed
    finally:
        await a.close()
        await b.close()


async def test_no_unit_waits_for_a_row_another_replica_has_locked(postgres_url: str) -> None:
    store = await open_store(postgres_url, pool_size=2)
    other = await asyncpg.connect(postgres_url)
    try:
        await enqueue(store, conversations=2, per_conversation=1)
        now = int(time.time() * 1000)
        # Another replica's group commit, claim made and not yet committed.
        await other.execute("BEGIN")
        locked = await other.fetch(
            outbox.CLAIM_SQL["postgres"].replace("ORDER BY o.seq", "AND o.seq = 1 ORDER BY o.seq"),
            now,
            10,
        )
        assert [row["message_id"] for row in locked] == ["gw_0_0"]

        async def claim(tx: Tx) -> list[str]:
            rows = await outbox.claim(tx, now, 1000, 10, "mine")
            return [row.message_id for row in rows]

        async def finish_locked(tx: Tx) -> None:
            await outbox.finish(tx, 1, "gw_0_0", "delivered", now)

        async with asyncio.timeout(3):  # a blocked unit would wait for `other` forever
            assert await store.write("claim", claim) == ["gw_1_0"]
            with pytest.raises(Exception) as refused:  # at once: the caller tries again
                await store.write("finish", finish_locked)
        assert is_lock_not_available(refused.value)
        await other.execute("ROLLBACK")
        await store.write("finish", finish_locked)
        assert await store.fetchval("SELECT COUNT(*) FROM relay_outbox WHERE seq = 1") == 0
        status = await store.fetchval("SELECT status FROM relay_messages WHERE id = 'gw_0_0'")
        assert status == "delivered"
    finally:
        await other.close()
        await store.close()


@pytest.mark.parametrize("dialect", ["sqlite"])
async def test_sqlite_keeps_its_single_process_claim(tmp_path, dialect: str) -> None:  # type: ignore[no-untyped-def]
    store = await open_store(f"sqlite:///{tmp_path / 'g.db'}")
    log: list[tuple[str, str, str]] = []
    w = worker(store, "only", log)
    try:
        order = await enqueue(store, conversations=3, per_conversation=4)
        await w.start()
        for _ in range(500):  # 10 s at most
            if len(log) == 12:
                break
            await asyncio.sleep(0.02)
    finally:
        await w.stop()
        await store.close()
    for recipient, mids in order.items():
        assert [mid for _, r, mid in log if r == recipient] == mids
