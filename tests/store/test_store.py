"""The Store contract, the same tests on every backend (SQLite file, PostgreSQL schema)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from gateway.store import INTEGRITY_ERRORS, Store, StoreError, Tx, open_store
from gateway.store.migrate import MACROS, load_migrations


async def put(store: Store, key: str, value: str) -> None:
    async def unit(tx: Tx) -> None:
        await tx.execute(
            "INSERT INTO kv (key, value, updated_at) VALUES ($1, $2, $3)", key, value, 0
        )

    await store.write("put_kv", unit)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await open_store(store_url, pool_size=4)
    yield opened
    await opened.close()


async def test_migrations_are_recorded(store: Store) -> None:
    rows = await store.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
    assert [(r["version"], r["name"]) for r in rows] == [
        (m.version, m.name) for m in load_migrations()
    ]


async def test_concurrent_writes_all_land(store: Store) -> None:
    await asyncio.gather(*(put(store, f"k{i}", "v") for i in range(200)))
    assert await store.fetchval("SELECT count(*) FROM kv") == 200


async def test_concurrent_writes_share_commits(store: Store) -> None:
    from gateway import metrics

    commits_before = metrics.STORE_COMMITS._value.get()
    await asyncio.gather(*(put(store, f"k{i}", "v") for i in range(200)))
    commits = metrics.STORE_COMMITS._value.get() - commits_before
    assert await store.fetchval("SELECT count(*) FROM kv") == 200
    assert 1 <= commits < 50  # grouped: far fewer commits than writes


async def test_a_failing_unit_rolls_back_alone(store: Store) -> None:
    async def half_then_fail(tx: Tx) -> None:
        await tx.execute("INSERT INTO kv (key, value, updated_at) VALUES ('half', 'x', 0)")
        raise ValueError("refused")

    await put(store, "a", "1")
    results = await asyncio.gather(
        store.write("fails", half_then_fail),
        put(store, "b", "2"),
        put(store, "a", "dup"),  # primary key violation
        return_exceptions=True,
    )
    assert isinstance(results[0], ValueError)
    assert results[1] is None
    assert isinstance(results[2], INTEGRITY_ERRORS)
    rows = await store.fetch("SELECT key, value FROM kv ORDER BY key")
    assert [(r["key"], r["value"]) for r in rows] == [("a", "1"), ("b", "2")]


async def test_on_commit_runs_only_for_committed_units(store: Store) -> None:
    seen: list[str] = []

    async def ok(tx: Tx) -> str:
        await tx.execute("INSERT INTO kv (key, value, updated_at) VALUES ('ok', '', 0)")
        tx.on_commit(lambda: seen.append("ok"))
        assert seen == []  # not before the commit
        return "done"

    async def bad(tx: Tx) -> None:
        tx.on_commit(lambda: seen.append("bad"))
        raise KeyError("x")

    assert await store.write("ok", ok) == "done"
    with pytest.raises(KeyError):
        await store.write("bad", bad)
    assert seen == ["ok"]


class Appends:
    """A deferred flush that numbers what every unit of a batch appended (like the audit chain)."""

    def __init__(self) -> None:
        self.flushes: list[list[str]] = []

    async def flush(self, tx: Tx, items: list[object]) -> None:
        keys = [str(item) for item in items]
        self.flushes.append(keys)
        last = await tx.fetchval("SELECT count(*) FROM kv WHERE value = 'seq'")
        await tx.executemany(
            "INSERT INTO kv (key, value, updated_at) VALUES ($1, 'seq', $2)",
            [(key, last + i) for i, key in enumerate(keys, start=1)],
        )


async def test_deferred_items_flush_once_per_batch_in_unit_order(store: Store) -> None:
    appends = Appends()

    def append(key: str, fail: bool = False) -> Callable[[Tx], Awaitable[None]]:
        async def unit(tx: Tx) -> None:
            await asyncio.sleep(0)  # the others queue up behind: one batch
            tx.defer(appends.flush, key)
            if fail:
                raise ValueError("refused")

        return unit

    results = await asyncio.gather(
        *(store.write("append", append(f"k{i}", fail=i == 3)) for i in range(8)),
        return_exceptions=True,
    )
    assert isinstance(results[3], ValueError)
    assert [r for i, r in enumerate(results) if i != 3] == [None] * 7
    # The rolled-back unit's item is gone; the others were numbered in order, in few batches.
    rows = await store.fetch("SELECT key, updated_at FROM kv ORDER BY updated_at")
    assert [(r["key"], r["updated_at"]) for r in rows] == [
        (f"k{i}", n) for n, i in enumerate([0, 1, 2, 4, 5, 6, 7], start=1)
    ]
    assert [key for flush in appends.flushes for key in flush] == [r["key"] for r in rows]
    assert len(appends.flushes) < 7


async def test_a_failing_flush_fails_its_whole_batch(store: Store) -> None:
    async def broken(tx: Tx, items: list[object]) -> None:
        await tx.execute("INSERT INTO kv (key, value, updated_at) VALUES ('flushed', '', 0)")
        raise RuntimeError("flush failed")

    async def unit(tx: Tx) -> None:
        await tx.execute("INSERT INTO kv (key, value, updated_at) VALUES ('unit', '', 0)")
        tx.defer(broken, "item")

    with pytest.raises(StoreError):
        await store.write("doomed", unit)
    assert await store.fetchval("SELECT count(*) FROM kv") == 0
    await put(store, "after", "1")  # the writer carries on
    assert await store.fetchval("SELECT count(*) FROM kv") == 1


async def test_a_read_cannot_defer(store: Store) -> None:
    async def unit(tx: Tx) -> None:
        tx.defer(Appends().flush, "item")

    with pytest.raises(StoreError, match="only a write unit"):
        await store.read("reads", unit)


async def test_tx_methods_and_row_access(store: Store) -> None:
    async def unit(tx: Tx) -> tuple[int, int, list[str], object, object]:
        await tx.executemany(
            "INSERT INTO kv (key, value, updated_at) VALUES ($1, $2, $3)",
            [("a", "1", 10), ("b", "2", 20), ("c", "3", 30)],
        )
        changed = await tx.execute("UPDATE kv SET value = 'x' WHERE updated_at >= $1", 20)
        total = await tx.fetchval("SELECT sum(updated_at) FROM kv WHERE key <> $1", "a")
        keys = [r["key"] for r in await tx.fetch("SELECT key FROM kv ORDER BY key")]
        missing = await tx.fetchrow("SELECT key FROM kv WHERE key = $1", "zz")
        nothing = await tx.fetchval("SELECT key FROM kv WHERE key = $1", "zz")
        return changed, int(total), keys, missing, nothing

    assert await store.write("several", unit) == (2, 50, ["a", "b", "c"], None, None)
    row = await store.fetchrow("SELECT key, value, updated_at FROM kv WHERE key = $1", "c")
    assert row is not None
    assert (row["key"], row[1], row["updated_at"]) == ("c", "x", 30)
    assert isinstance(row["updated_at"], int)  # BIGINT is int on both


async def test_bytes_round_trip(store: Store) -> None:
    blob = MACROS[store.dialect]["{{blob}}"]
    create = f"CREATE TABLE blobs (id INTEGER PRIMARY KEY, data {blob} NOT NULL)"
    await store.write("blob_table", lambda tx: tx.execute(create))
    await store.write(
        "blob", lambda tx: tx.execute("INSERT INTO blobs VALUES ($1, $2)", 1, b"\x00\xffab")
    )
    assert await store.fetchval("SELECT data FROM blobs WHERE id = $1", 1) == b"\x00\xffab"


async def test_writes_survive_reopening(store_url: str) -> None:
    store = await open_store(store_url)
    await put(store, "durable", "yes")
    await store.close()
    reopened = await open_store(store_url)
    assert await reopened.fetchval("SELECT value FROM kv WHERE key = 'durable'") == "yes"
    assert await reopened.fetchval("SELECT count(*) FROM schema_migrations") == len(
        load_migrations()
    )
    await reopened.close()


async def test_read_sees_one_snapshot(store: Store) -> None:
    await put(store, "x", "1")
    inside = asyncio.Event()
    written = asyncio.Event()

    async def both(tx: Tx) -> tuple[int, int, str]:
        before = await tx.fetchval("SELECT count(*) FROM kv")
        inside.set()
        await written.wait()
        after = await tx.fetchval("SELECT count(*) FROM kv")
        row = await tx.fetchrow("SELECT value FROM kv WHERE key = $1", "x")
        assert row is not None
        return before, after, row["value"]

    reading = asyncio.create_task(store.read("count_twice", both))
    await inside.wait()
    await put(store, "y", "2")
    written.set()
    assert await reading == (1, 1, "1")
    assert await store.fetchval("SELECT count(*) FROM kv") == 2


async def test_a_newer_schema_is_refused(store_url: str) -> None:
    store = await open_store(store_url)
    await store.write(
        "future",
        lambda tx: tx.execute("INSERT INTO schema_migrations VALUES (9999, 'future', 0)"),
    )
    await store.close()
    with pytest.raises(StoreError, match="9999 is newer than this gateway"):
        await open_store(store_url)


async def test_readonly_store_refuses_writes(store_url: str) -> None:
    writer = await open_store(store_url)
    await put(writer, "k", "v")
    reader = await open_store(store_url, readonly=True)
    assert await reader.fetchval("SELECT value FROM kv") == "v"
    with pytest.raises(StoreError):
        await reader.write("nope", lambda tx: tx.execute("DELETE FROM kv"))
    await reader.close()
    await writer.close()


async def test_closed_store_refuses_work(store: Store) -> None:
    await store.close()
    with pytest.raises(StoreError):
        await put(store, "late", "x")
    with pytest.raises(StoreError):
        await store.fetchval("SELECT 1")


async def test_ping(store: Store) -> None:
    await store.ping()


async def test_unknown_scheme_is_refused() -> None:
    with pytest.raises(StoreError, match="unsupported"):
        await open_store("mysql://x")
