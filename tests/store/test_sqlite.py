"""The SQLite store on real files: migrations, WAL, group commit, savepoint isolation."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from gateway.store import StoreError, Tx, open_store
from gateway.store.migrate import load_migrations
from gateway.store.sqlite import SqliteStore, to_sqlite


async def put(store: SqliteStore, key: str, value: str) -> None:
    async def unit(tx: Tx) -> None:
        await tx.execute(
            "INSERT INTO kv (key, value, updated_at) VALUES ($1, $2, $3)", key, value, 0
        )

    await store.write("put_kv", unit)


@pytest.fixture
async def store(tmp_path: Path) -> SqliteStore:
    opened = await open_store(f"sqlite:///{tmp_path / 'db' / 'g.db'}")
    assert isinstance(opened, SqliteStore)
    yield opened
    await opened.close()


def test_placeholders_are_rewritten() -> None:
    assert to_sqlite("SELECT $1, $2, $10") == "SELECT ?1, ?2, ?10"


async def test_migrations_are_recorded_and_wal_is_on(store: SqliteStore) -> None:
    rows = await store.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
    assert [(r["version"], r["name"]) for r in rows] == [
        (m.version, m.name) for m in load_migrations()
    ]
    assert (await store.fetchval("PRAGMA journal_mode")).lower() == "wal"


async def test_concurrent_writes_share_commits(store: SqliteStore) -> None:
    from gateway import metrics

    commits_before = metrics.STORE_COMMITS._value.get()
    await asyncio.gather(*(put(store, f"k{i}", "v") for i in range(200)))
    commits = metrics.STORE_COMMITS._value.get() - commits_before
    assert await store.fetchval("SELECT count(*) FROM kv") == 200
    assert 1 <= commits < 50  # grouped: far fewer commits than writes


async def test_a_failing_unit_rolls_back_alone(store: SqliteStore) -> None:
    async def half_then_fail(tx: Tx) -> None:
        await tx.execute("INSERT INTO kv (key, value, updated_at) VALUES ('half', 'x', 0)")
        raise ValueError("refused")

    results = await asyncio.gather(
        put(store, "a", "1"),
        store.write("fails", half_then_fail),
        put(store, "b", "2"),
        put(store, "a", "dup"),  # primary key violation
        return_exceptions=True,
    )
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], ValueError)
    assert isinstance(results[3], sqlite3.IntegrityError)
    rows = await store.fetch("SELECT key, value FROM kv ORDER BY key")
    assert [(r["key"], r["value"]) for r in rows] == [("a", "1"), ("b", "2")]


async def test_on_commit_runs_only_for_committed_units(store: SqliteStore) -> None:
    seen: list[str] = []

    async def ok(tx: Tx) -> str:
        await tx.execute("INSERT INTO kv (key, value, updated_at) VALUES ('ok', '', 0)")
        tx.on_commit(lambda: seen.append("ok"))
        return "done"

    async def bad(tx: Tx) -> None:
        tx.on_commit(lambda: seen.append("bad"))
        raise KeyError("x")

    assert await store.write("ok", ok) == "done"
    with pytest.raises(KeyError):
        await store.write("bad", bad)
    assert seen == ["ok"]


async def test_writes_survive_reopening(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'g.db'}"
    store = await open_store(url)
    assert isinstance(store, SqliteStore)
    await put(store, "durable", "yes")
    await store.close()
    reopened = await open_store(url)
    assert await reopened.fetchval("SELECT value FROM kv WHERE key = 'durable'") == "yes"
    await reopened.close()


async def test_read_sees_one_snapshot(store: SqliteStore) -> None:
    await put(store, "x", "1")

    async def both(tx: Tx) -> tuple[int, str]:
        count = await tx.fetchval("SELECT count(*) FROM kv")
        row = await tx.fetchrow("SELECT value FROM kv WHERE key = $1", "x")
        assert row is not None
        return count, row["value"]

    assert await store.read("count_and_get", both) == (1, "1")


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'g.db'}"
    store = await open_store(url)
    await store.close()
    conn = sqlite3.connect(tmp_path / "g.db")
    conn.execute("INSERT INTO schema_migrations VALUES (9999, 'future', 0)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer than this gateway"):
        await open_store(url)


async def test_readonly_open_cannot_write(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'g.db'}"
    with pytest.raises(StoreError, match="no database"):
        await open_store(url, readonly=True)
    writer = await open_store(url)
    await put(writer, "k", "v")
    reader = await open_store(url, readonly=True)
    assert await reader.fetchval("SELECT value FROM kv") == "v"
    with pytest.raises(StoreError):
        await reader.write("nope", lambda tx: tx.execute("DELETE FROM kv"))
    await reader.close()
    await writer.close()


async def test_unknown_scheme_is_refused() -> None:
    with pytest.raises(StoreError, match="unsupported"):
        await open_store("mysql://x")


async def test_closed_store_refuses_writes(store: SqliteStore) -> None:
    await store.close()
    with pytest.raises(StoreError):
        await put(store, "late", "x")


async def test_deleted_values_are_overwritten_on_disk(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'g.db'}"
    store = await open_store(url)
    marker = "deleted-marker-7f3a9c"
    await put(store, "gone", marker * 50)

    async def delete(tx: Tx) -> None:
        await tx.execute("DELETE FROM kv WHERE key = 'gone'")

    await store.write("delete_kv", delete)
    await store.close()  # checkpoints the WAL into the main file
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("g.db"))
    assert marker.encode() not in raw
