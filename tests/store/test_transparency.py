"""The key transparency tables (gateway/store/transparency.py), on both backends."""

from __future__ import annotations

import asyncio

from gateway.crypto.merkle import leaf_hash
from gateway.store import Store, Tx
from gateway.store import transparency as kt


async def log_change(store: Store, uri: str, keys: tuple[str, str], salt: bytes) -> object:
    async def unit(tx: Tx) -> object:
        bumped = await kt.bump_user(tx, uri, salt, *keys)
        if bumped is not None:
            data = f"{uri} {keys} {bumped[1]}".encode()
            await kt.add_pending(tx, f"h-{uri}", data, leaf_hash(data), 1)
        return bumped

    return await store.write("log_change", unit)


async def test_versions_and_salts_per_user(store: Store) -> None:
    assert await kt.user(store, "mimi://acme/u/bob") is None
    first = await log_change(store, "mimi://acme/u/bob", ("i1", "s1"), b"A" * 16)
    assert first == (b"A" * 16, 1)
    assert await log_change(store, "mimi://acme/u/bob", ("i1", "s1"), b"B" * 16) is None
    # A new key keeps the user's salt and takes the next version.
    assert await log_change(store, "mimi://acme/u/bob", ("i1", "s2"), b"B" * 16) == (
        b"A" * 16, 2,
    )  # fmt: skip
    logged = await kt.user(store, "mimi://acme/u/bob")
    assert logged is not None and (logged.version, logged.signing_key) == (2, "s2")
    assert await kt.has_pending(store)


async def test_sequencing_gives_contiguous_indexes_in_order(store: Store) -> None:
    for n in range(5):
        await log_change(store, f"mimi://acme/u/u{n}", ("i", "s"), bytes(16))
    assert await kt.size(store) == 0
    assert await store.write("seq", lambda tx: kt.sequence_pending(tx, 3)) == 3
    assert await store.write("seq", kt.sequence_pending) == 2
    assert await store.write("seq", kt.sequence_pending) == 0
    assert not await kt.has_pending(store)
    assert await kt.size(store) == 5
    leaves = await kt.leaves(store, 0, 5)
    assert [leaf.leaf_index for leaf in leaves] == [0, 1, 2, 3, 4]
    assert [leaf.data.split()[0] for leaf in leaves] == [f"mimi://acme/u/u{n}" for n in range(5)]
    hashes = await kt.leaf_hashes(store, 1, 3)
    assert hashes == [leaf_hash(leaves[1].data.encode()), leaf_hash(leaves[2].data.encode())]
    mine = await kt.user_leaves(store, "h-mimi://acme/u/u3")
    assert [leaf.leaf_index for leaf in mine] == [3]


async def test_concurrent_changes_are_all_sequenced_once(store: Store) -> None:
    await asyncio.gather(
        *(log_change(store, f"mimi://acme/u/c{n}", ("i", "s"), bytes(16)) for n in range(20)),
        *(store.write("seq", kt.sequence_pending) for _ in range(5)),
    )
    await store.write("seq", kt.sequence_pending)
    indexes = [leaf.leaf_index for leaf in await kt.leaves(store, 0, 100)]
    assert indexes == list(range(20)) and await kt.size(store) == 20


async def test_heads_keep_the_newest_signature_per_size(store: Store) -> None:
    assert await kt.latest_head(store) is None
    older = kt.StoredHead(3, "root", 100, "k", "sig-old")
    newer = kt.StoredHead(3, "root", 200, "k", "sig-new")
    for head in (newer, older, kt.StoredHead(1, "r1", 50, "k", "s1")):
        await store.write("head", lambda tx, h=head: kt.put_head(tx, h))  # type: ignore[misc]
    assert await kt.latest_head(store) == newer
    assert [h.tree_size for h in await kt.heads(store)] == [1, 3]
