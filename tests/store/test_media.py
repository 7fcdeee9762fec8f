"""gateway.store.media on both backends: records, expiry, blob references, quota use."""

from __future__ import annotations

from gateway.store import Store
from gateway.store import media as m
from gateway.store.media import MediaRecord


def record(media_id: str, *, sha: str = "aa", size: int = 10, by: str = "acme", until: int = 100):
    return MediaRecord(
        id=media_id, sha256=sha, size=size, uploader=by, peer="mimi://whatsapp/u/1",
        created_at=1, expires_at=until,
    )  # fmt: skip


async def add(store: Store, *records: MediaRecord) -> None:
    for r in records:
        await store.write("add", lambda tx, r=r: m.add_media(tx, r))


async def test_live_records_until_they_expire(store: Store) -> None:
    await add(store, record("one", until=100))
    assert await m.live_media(store, "one", now=99) == record("one", until=100)
    assert await m.live_media(store, "one", now=100) is None
    assert await m.live_media(store, "nope", now=0) is None


async def test_expiry_returns_the_digests_and_keeps_shared_blobs(store: Store) -> None:
    await add(store, record("a", sha="s1", until=10), record("b", sha="s1", until=50))
    await add(store, record("c", sha="s2", until=10))
    gone = await store.write("expire", lambda tx: m.remove_expired_media(tx, now=10))
    assert sorted(gone) == ["s1", "s2"]
    assert await m.blob_referenced(store, "s1")
    assert not await m.blob_referenced(store, "s2")
    assert await m.live_media(store, "b", now=10) is not None


async def test_bytes_stored_by_counts_unexpired_media_per_provider(store: Store) -> None:
    assert await m.bytes_stored_by(store, "acme", now=0) == 0
    await add(
        store,
        record("a", size=5, until=10),
        record("b", size=7, until=50),
        record("c", size=11, by="beta", until=50),
    )
    assert await m.bytes_stored_by(store, "acme", now=0) == 12
    assert await m.bytes_stored_by(store, "acme", now=10) == 7
    assert await m.bytes_stored_by(store, "beta", now=10) == 11
