"""gateway.store.keys on both backends: identities, one-time key claims, fallback, contacts."""

from __future__ import annotations

import asyncio

from gateway.store import Store, Tx, open_store
from gateway.store import keys as k
from gateway.store.keys import Identity, SignedKey

BOB = "mimi://acme/u/bob"


def keys(n: int, prefix: str = "k") -> list[SignedKey]:
    return [SignedKey(f"{prefix}{i:03}", f"key{i}", f"sig{i}") for i in range(n)]


async def stock(store: Store, n: int, *, at: int = 1) -> None:
    async def unit(tx: Tx) -> None:
        await k.put_identity(tx, BOB, "acme", "ik", "sk", at=at)
        await k.add_one_time_keys(tx, BOB, keys(n), at=at)

    await store.write("test_stock", unit)


async def claim(store: Store) -> SignedKey | None:
    return await store.write("claim", lambda tx: k.claim_one_time_key(tx, BOB))


async def test_identities_are_created_and_replaced(store: Store) -> None:
    assert await k.identity(store, BOB) is None
    await stock(store, 0)

    async def replace(tx: Tx) -> None:
        await k.put_identity(tx, BOB, "acme", "ik2", "sk2", at=2)

    await store.write("test_replace", replace)
    assert await k.identity(store, BOB) == Identity("acme", "ik2", "sk2")


async def test_claims_take_the_oldest_key_once_then_none(store: Store) -> None:
    await stock(store, 3)
    await store.write("later", lambda tx: k.add_one_time_keys(tx, BOB, keys(1, "a"), at=0))
    claimed = [
        await store.write("claim", lambda tx: k.claim_one_time_key(tx, BOB)) for _ in "1234"
    ]
    assert claimed == [SignedKey("a000", "key0", "sig0"), *keys(3), None][:4]
    assert await store.write("claim", lambda tx: k.claim_one_time_key(tx, BOB)) is None
    assert await k.one_time_key_count(store, BOB) == 0


async def test_a_known_key_id_keeps_its_key(store: Store) -> None:
    await stock(store, 2)
    again = [SignedKey("k000", "other", "other")]
    await store.write("again", lambda tx: k.add_one_time_keys(tx, BOB, again, at=5))
    assert await k.one_time_key_count(store, BOB) == 2
    first = await claim(store)
    assert first == keys(1)[0]


async def test_concurrent_claims_never_share_a_key(store: Store, store_url: str) -> None:
    await stock(store, 30)
    stores = [store]
    if store.dialect == "postgres":  # a second replica on the same database
        stores.append(await open_store(store_url, pool_size=4))
    try:
        claims = await asyncio.gather(
            *(
                stores[i % len(stores)].write("claim", lambda tx: k.claim_one_time_key(tx, BOB))
                for i in range(40)
            )
        )
    finally:
        for extra in stores[1:]:
            await extra.close()
    got = [c.key_id for c in claims if c is not None]
    assert len(got) == 30 and len(set(got)) == 30
    assert await k.one_time_key_count(store, BOB) == 0


async def test_fallback_keys_are_replaced_and_dropped_with_the_stock(store: Store) -> None:
    await stock(store, 2)
    assert await k.fallback_key(store, BOB) is None
    for key_id in ("f1", "f2"):
        fb = SignedKey(key_id, "fk", "fs")
        await store.write("fallback", lambda tx, fb=fb: k.put_fallback_key(tx, BOB, fb, at=3))
    assert await k.fallback_key(store, BOB) == SignedKey("f2", "fk", "fs")
    await store.write("drop", lambda tx: k.drop_keys(tx, BOB))
    assert await k.fallback_key(store, BOB) is None
    assert await k.one_time_key_count(store, BOB) == 0
    assert await k.identity(store, BOB) is not None


async def test_contacts_are_recorded_once_per_provider(store: Store) -> None:
    for client_id, at in (("p2", 1), ("p1", 2), ("p2", 3)):
        await store.write(
            "contact",
            lambda tx, c=client_id, t=at: k.record_contact(tx, BOB, c, at=t),
        )
    assert await k.contacts(store, BOB) == ["p1", "p2"]
    assert await k.contacts(store, "mimi://acme/u/nobody") == []
