"""What several replicas on one PostgreSQL database share: notifications and held locks."""

from __future__ import annotations

import asyncio

import pytest

from gateway.store import Store, StoreError, Tx, open_store


async def two_stores(url: str) -> tuple[Store, Store]:
    return await open_store(url, pool_size=2), await open_store(url, pool_size=2)


async def test_a_commit_notifies_the_other_replica_not_itself(postgres_url: str) -> None:
    a, b = await two_stores(postgres_url)
    try:
        heard_a: list[str | None] = []
        heard_b: asyncio.Queue[str | None] = asyncio.Queue()
        await a.subscribe("events", heard_a.append)
        await b.subscribe("events", heard_b.put_nowait)

        async def unit(tx: Tx) -> None:
            tx.notify("events", "client-1")
            tx.notify("events", "client-1")  # once per batch is enough
            tx.notify("events", "it's")

        await a.write("notify", unit)
        got = {await asyncio.wait_for(heard_b.get(), 5), await asyncio.wait_for(heard_b.get(), 5)}
        assert got == {"client-1", "it's"}
        await asyncio.sleep(0.1)
        assert heard_b.empty()
        assert heard_a == []  # its own commit: local waiters use on_commit
    finally:
        await a.close()
        await b.close()


async def test_a_rolled_back_unit_notifies_nobody(postgres_url: str) -> None:
    a, b = await two_stores(postgres_url)
    try:
        heard: asyncio.Queue[str | None] = asyncio.Queue()
        await b.subscribe("outbox", heard.put_nowait)

        async def fails(tx: Tx) -> None:
            tx.notify("outbox", "lost")
            raise RuntimeError("rolled back")

        async def succeeds(tx: Tx) -> None:
            tx.notify("outbox", "kept")

        results = await asyncio.gather(
            a.write("fails", fails), a.write("ok", succeeds), return_exceptions=True
        )
        assert isinstance(results[0], RuntimeError)
        assert await asyncio.wait_for(heard.get(), 5) == "kept"
        await asyncio.sleep(0.1)
        assert heard.empty()
    finally:
        await a.close()
        await b.close()


async def test_a_held_name_refuses_a_second_live_process(postgres_url: str) -> None:
    a, b = await two_stores(postgres_url)
    try:
        await a.hold_exclusive("replica:r1")
        await b.hold_exclusive("replica:r2")  # another name is free
        b._session._hold_wait_s = 0.2  # type: ignore[attr-defined]  # it is alive: no wait
        with pytest.raises(StoreError, match="replica:r1 is held by another live gateway"):
            await b.hold_exclusive("replica:r1")
        await a.close()  # the process ends: its locks go with its connection
        await b.hold_exclusive("replica:r1")
        await b.ping()
    finally:
        await a.close()
        await b.close()


async def test_a_dropped_session_is_remade_and_wakes_everyone(postgres_url: str) -> None:
    a, b = await two_stores(postgres_url)
    try:
        heard: asyncio.Queue[str | None] = asyncio.Queue()
        await b.subscribe("events", heard.put_nowait)
        await b.hold_exclusive("replica:r1")
        session = b._session  # type: ignore[attr-defined]
        session._conn.terminate()  # as if the network dropped it
        assert await asyncio.wait_for(heard.get(), 5) is None  # look again: may have missed some

        async def unit(tx: Tx) -> None:
            tx.notify("events", "after")

        await a.write("notify", unit)
        assert await asyncio.wait_for(heard.get(), 5) == "after"
        await b.ping()  # the lock was taken again
    finally:
        await a.close()
        await b.close()


async def test_sqlite_has_one_process_and_nothing_to_share(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = await open_store(f"sqlite:///{tmp_path / 'g.db'}")
    try:
        heard: list[str | None] = []
        await store.subscribe("events", heard.append)
        await store.hold_exclusive("replica:r1")
        await store.hold_exclusive("replica:r1")

        async def unit(tx: Tx) -> None:
            tx.notify("events", "x")

        await store.write("notify", unit)
        assert heard == []
    finally:
        await store.close()
