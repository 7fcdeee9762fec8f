"""gateway.store.ratelimit: buckets shared in PostgreSQL; SQLite keeps them in memory."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.store import Store, open_store
from gateway.store import ratelimit as buckets


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await open_store(store_url, pool_size=4)
    yield opened
    await opened.close()


async def test_where_buckets_live(store: Store) -> None:
    assert buckets.buckets_in_database(store) == (store.dialect == "postgres")


async def test_a_bucket_spends_its_burst_then_refuses(postgres_url: str) -> None:
    store = await open_store(postgres_url, pool_size=2)
    try:
        takes = [await buckets.take_token(store, "k", 3, 0.001) for _ in range(4)]
        assert [t.allowed for t in takes] == [True, True, True, False]
        assert takes[-1].tokens < 1
        assert (await buckets.take_token(store, "other", 3, 0.001)).allowed
        await buckets.forget_idle_buckets(store, -60_000)  # every bucket counts as idle
        # Forgotten buckets start full again.
        assert (await buckets.take_token(store, "k", 3, 0.001)).allowed
    finally:
        await store.close()


async def test_a_take_spends_up_to_what_it_asks_for_and_what_there_is(postgres_url: str) -> None:
    store = await open_store(postgres_url, pool_size=2)
    try:
        first = await buckets.take_token(store, "k", 10, 0.001, up_to=4)
        assert (first.granted, round(first.tokens)) == (4, 6)
        second = await buckets.take_token(store, "k", 10, 0.001, up_to=4)
        assert (second.granted, round(second.tokens)) == (4, 2)
        last = await buckets.take_token(store, "k", 10, 0.001, up_to=4)
        assert last.granted == 2 and last.allowed and last.tokens < 1  # what was left
        refused = await buckets.take_token(store, "k", 10, 0.001, up_to=4)
        assert (refused.granted, refused.allowed) == (0, False)
    finally:
        await store.close()
