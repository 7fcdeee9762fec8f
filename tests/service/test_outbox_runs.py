"""Delivery rounds claim runs of each conversation and record their outcomes in one unit."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from gateway.platforms.base import Outgoing, RetryableDelivery
from gateway.service.delivery import DeliveryWorker
from gateway.store import Store, Tx, open_store, outbox
from tests.service.test_outbox_replicas import CONFIG, enqueue, worker

RUNS = msgspec.structs.replace(CONFIG, claim_batch=64, claim_per_conversation=4)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await open_store(store_url, pool_size=2)
    yield opened
    await opened.close()


def runs_worker(store: Store, log: list[tuple[str, str, str]]) -> DeliveryWorker:
    made = worker(store, "r", log)
    made.config = RUNS
    return made


def record_units(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    names: list[str] = []
    write = store.write

    async def recording(name: str, unit: Any) -> Any:
        names.append(name)
        return await write(name, unit)

    monkeypatch.setattr(store, "write", recording)
    return names


async def test_a_round_delivers_runs_in_order_and_records_them_in_one_unit(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    order = await enqueue(store, conversations=3, per_conversation=6)
    log: list[tuple[str, str, str]] = []
    w = runs_worker(store, log)
    units = record_units(store, monkeypatch)
    assert await w.run_once()
    assert units == ["outbox_claim", "outbox_outcomes"]
    for recipient, mids in order.items():
        assert [mid for _, r, mid in log if r == recipient] == mids[:4]  # a run of 4, in order
    assert await store.fetchval("SELECT COUNT(*) FROM relay_outbox") == 3 * 2
    assert await w.run_once()
    assert await store.fetchval("SELECT COUNT(*) FROM relay_outbox") == 0
    for recipient, mids in order.items():
        assert [mid for _, r, mid in log if r == recipient] == mids
    statuses = await store.fetch("SELECT DISTINCT status FROM relay_messages")
    assert [row["status"] for row in statuses] == ["delivered"]


async def test_a_retry_gives_the_rest_of_its_run_back_untried(store: Store) -> None:
    order = await enqueue(store, conversations=2, per_conversation=4)
    log: list[tuple[str, str, str]] = []
    w = runs_worker(store, log)
    deliver = w.platform.deliver

    async def second_is_down(item: Outgoing) -> None:
        if item.id == "gw_0_1":
            raise RetryableDelivery("platform_unavailable")
        await deliver(item)

    w.platform.deliver = second_is_down  # type: ignore[method-assign]
    assert await w.run_once()
    assert [mid for _, r, mid in log if r == "mimi://whatsapp/u/0"] == ["gw_0_0"]
    assert [mid for _, r, mid in log if r == "mimi://whatsapp/u/1"] == order["mimi://whatsapp/u/1"]
    rows = await store.fetch(
        "SELECT message_id, attempts, lease_until, next_attempt_at FROM relay_outbox ORDER BY seq"
    )
    assert [row["message_id"] for row in rows] == ["gw_0_1", "gw_0_2", "gw_0_3"]
    assert rows[0]["attempts"] == 1 and rows[0]["next_attempt_at"] > time.time() * 1000
    assert all(row["lease_until"] == 0 for row in rows)  # claimable again, after gw_0_1
    assert [row["attempts"] for row in rows[1:]] == [0, 0]


async def test_no_row_is_claimed_past_a_leased_head(store: Store) -> None:
    await enqueue(store, conversations=1, per_conversation=3)
    now = int(time.time() * 1000)

    async def claim(per_conversation: int) -> list[str]:
        async def unit(tx: Tx) -> list[str]:
            rows = await outbox.claim(tx, now, 1000, 10, "r", per_conversation=per_conversation)
            return [row.message_id for row in rows]

        return await store.write("claim", unit)

    assert await claim(1) == ["gw_0_0"]
    assert await claim(4) == []  # gw_0_1 and gw_0_2 wait for the leased head


async def test_rounds_go_round_the_conversations(store: Store) -> None:
    await enqueue(store, conversations=3, per_conversation=2)
    now = int(time.time() * 1000)
    conversation = "mimi://p/u/a\nmimi://whatsapp/u/{}".format

    async def claim(after: str) -> list[str]:
        async def unit(tx: Tx) -> list[str]:
            rows = await outbox.claim(tx, now, 1000, 2, "r", per_conversation=2, after=after)
            return [row.message_id for row in rows]

        return await store.write("claim", unit)

    assert await claim(conversation(1)) == ["gw_2_0", "gw_2_1"]  # after the cursor first
    assert await claim(conversation(2)) == ["gw_0_0", "gw_0_1"]  # then round the corner
    assert await claim(conversation(0)) == ["gw_1_0", "gw_1_1"]
    assert await claim(conversation(1)) == []  # all leased


async def test_one_row_per_conversation_per_round_is_delivered_in_order(store: Store) -> None:
    order = await enqueue(store, conversations=2, per_conversation=3)
    log: list[tuple[str, str, str]] = []
    w = worker(store, "r", log)
    w.config = msgspec.structs.replace(CONFIG, claim_per_conversation=1)
    while await w.run_once():
        pass
    for recipient, mids in order.items():
        assert [mid for _, r, mid in log if r == recipient] == mids
