"""gateway.store.events on both backends: per-provider numbering, reads, acks, migration 0008."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gateway.store import Store, Tx, migrate, open_store, postgres, sqlite
from gateway.store import events as stored


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await open_store(store_url, pool_size=4)
    yield opened
    await opened.close()


async def append(store: Store, client_id: str, body: str = '{"type":"typing"}') -> int:
    async def unit(tx: Tx) -> int:
        return await stored.append_events(tx, client_id, [stored.NewEvent("typing", body, 1_000)])

    return await store.write("test_append", unit)


async def test_events_appended_together_are_numbered_on_in_order(store: Store) -> None:
    assert await append(store, "acme") == 1

    async def several(tx: Tx) -> int:
        events = [stored.NewEvent("typing", f'{{"n":{n}}}', 1_000 + n) for n in range(3)]
        return await stored.append_events(tx, "acme", events)

    assert await store.write("several", several) == 4
    assert await store.write("none", lambda tx: stored.append_events(tx, "acme", [])) == 0
    page = await stored.events_after(store, "acme", 1, 10)
    assert [(e.seq, e.body) for e in page] == [(2, '{"n":0}'), (3, '{"n":1}'), (4, '{"n":2}')]
    assert await stored.last_seq(store, "acme") == 4


async def ack(store: Store, client_id: str, cursor: int) -> bool:
    async def unit(tx: Tx) -> bool:
        return await stored.ack_events(tx, client_id, cursor, 2_000)

    return await store.write("test_ack", unit)


async def test_each_provider_counts_its_own_events(store: Store) -> None:
    numbers = [await append(store, client) for client in ("acme", "globex", "acme", "globex")]
    assert numbers == [1, 1, 2, 2]
    assert await append(store, "acme") == 3
    page = await stored.events_after(store, "acme", 0, 10)
    assert [e.seq for e in page] == [1, 2, 3]
    assert page[0].body == '{"type":"typing"}'
    assert [e.seq for e in await stored.events_after(store, "acme", 1, 1)] == [2]
    assert await stored.last_seq(store, "acme") == 3
    assert await stored.last_seq(store, "nobody") == 0


async def test_ack_drops_up_to_the_cursor_and_never_moves_back(store: Store) -> None:
    for _ in range(3):
        await append(store, "acme")
    await append(store, "globex")
    assert await stored.acked_cursor(store, "acme") == 0
    assert await ack(store, "acme", 2)
    assert [e.seq for e in await stored.events_after(store, "acme", 0, 10)] == [3]
    assert await stored.acked_cursor(store, "acme") == 2
    assert await ack(store, "acme", 1)  # an older cursor is accepted but changes nothing
    assert await stored.acked_cursor(store, "acme") == 2
    assert not await ack(store, "acme", 4)  # past the newest number given
    assert await stored.count_backlog(store, "acme") == 1
    assert await stored.backlog_per_provider(store) == {"acme": 1, "globex": 1}
    assert sorted(await stored.providers_with_events(store)) == ["acme", "globex"]
    # Numbers are not reused once their events are gone.
    assert await ack(store, "acme", 3)
    assert await append(store, "acme") == 4


async def test_replicas_appending_for_one_provider_get_every_number_once(
    postgres_url: str,
) -> None:
    # Replicas share PostgreSQL only.
    replicas = [await open_store(postgres_url, pool_size=2) for _ in range(3)]
    try:
        numbers = await asyncio.gather(
            *(append(replicas[i % 3], "acme") for i in range(60)),
            *(append(replicas[i % 3], "globex") for i in range(15)),
        )
        assert sorted(numbers[:60]) == list(range(1, 61))
        assert sorted(numbers[60:]) == list(range(1, 16))
        page = await stored.events_after(replicas[0], "acme", 0, 100)
        assert [e.seq for e in page] == list(range(1, 61))
    finally:
        for replica in replicas:
            await replica.close()


async def test_migration_keeps_queued_events_and_cursors(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = [m for m in migrate.load_migrations() if m.version < 8]
    for backend in (sqlite, postgres):
        monkeypatch.setattr(backend, "load_migrations", lambda: before)
    old = await open_store(store_url, pool_size=2)

    async def legacy(tx: Tx) -> None:
        # Numbers from the single global sequence: acme saw 1, 2, 4; globex 3 and 5.
        for client in ("acme", "acme", "globex", "acme", "globex"):
            await tx.execute(
                "INSERT INTO provider_events (client_id, type, body, created_at) "
                "VALUES ($1, 'typing', '{}', 0)",
                client,
            )
        await tx.execute("DELETE FROM provider_events WHERE seq = 1")
        await tx.execute(
            "INSERT INTO provider_event_cursors (client_id, acked, updated_at) "
            "VALUES ('acme', 1, 0)"
        )

    await old.write("legacy", legacy)
    await old.close()
    monkeypatch.undo()

    store = await open_store(store_url, pool_size=2)
    try:
        # Cursors handed out before the migration still mean what they meant.
        assert [e.seq for e in await stored.events_after(store, "acme", 1, 10)] == [2, 4]
        assert [e.seq for e in await stored.events_after(store, "acme", 2, 10)] == [4]
        assert await stored.acked_cursor(store, "acme") == 1
        # New events continue after the provider's own last number.
        assert await append(store, "acme") == 5
        assert await append(store, "globex") == 6
        assert await append(store, "initech") == 1
        assert await ack(store, "acme", 5)
        assert await stored.count_backlog(store, "acme") == 0
    finally:
        await store.close()
