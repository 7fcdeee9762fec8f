"""What only the SQLite backend has: placeholder rewriting, WAL, file checks.

The backend-agnostic Store contract is in test_store.py, run against SQLite there too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.store import StoreError, Tx, open_store
from gateway.store.sqlite import SqliteStore, to_sqlite
from tests.store.test_store import put


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = await open_store(f"sqlite:///{tmp_path / 'db' / 'g.db'}")
    assert isinstance(opened, SqliteStore)
    yield opened
    await opened.close()


def test_placeholders_are_rewritten() -> None:
    assert to_sqlite("SELECT $1, $2, $10") == "SELECT ?1, ?2, ?10"


async def test_wal_is_on(store: SqliteStore) -> None:
    assert (await store.fetchval("PRAGMA journal_mode")).lower() == "wal"


async def test_readonly_open_needs_an_existing_file(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no database"):
        await open_store(f"sqlite:///{tmp_path / 'g.db'}", readonly=True)


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
