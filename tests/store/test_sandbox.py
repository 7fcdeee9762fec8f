"""gateway/store/sandbox.py on both backends: users, Olm accounts, keys and inboxes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from gateway.store import Store, Tx, is_lock_not_available, open_store
from gateway.store import sandbox as sandbox_store
from gateway.store.sandbox import SandboxUser, StoredKey, UserKeys

ALICE = SandboxUser(
    uri="mimi://whatsapp/u/491511", service="whatsapp", native_id="491511", name="A"
)
KEYS = UserKeys("identity", "signing")


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await open_store(store_url, pool_size=4)
    yield opened
    await opened.close()


def key(n: int) -> StoredKey:
    return StoredKey(f"k{n:02d}", f"key{n}", f"sig{n}")


async def create(store: Store, one_time: int = 3) -> None:
    async def unit(tx: Tx) -> None:
        await sandbox_store.insert_user(tx, ALICE, KEYS, b"account-v0", 1000)
        await sandbox_store.publish_one_time_keys(tx, ALICE.uri, [key(n) for n in range(one_time)])
        await sandbox_store.publish_fallback_key(tx, ALICE.uri, StoredKey("fb", "fbkey", "fbsig"))

    await store.write("create", unit)


async def test_a_user_reads_back(store: Store) -> None:
    assert not await sandbox_store.user_exists(store, ALICE.uri)
    assert await sandbox_store.user(store, ALICE.uri) is None
    assert await sandbox_store.user_keys(store, ALICE.uri) is None
    assert await sandbox_store.olm_account(store, ALICE.uri) is None
    await create(store)
    assert await sandbox_store.user_exists(store, ALICE.uri)
    assert await sandbox_store.user(store, ALICE.uri) == ALICE
    assert await sandbox_store.user_keys(store, ALICE.uri) == KEYS
    assert await sandbox_store.olm_account(store, ALICE.uri) == (b"account-v0", 0)
    assert await sandbox_store.olm_version(store, ALICE.uri) == 0


async def test_an_account_is_saved_under_its_new_version(store: Store) -> None:
    await create(store)

    async def save(tx: Tx) -> int | None:
        version = await sandbox_store.lock_olm_version(tx, ALICE.uri)
        assert version is not None
        await sandbox_store.save_olm_account(tx, ALICE.uri, b"account-v1", version + 1)
        return version

    assert await store.write("save", save) == 0
    assert await sandbox_store.olm_account(store, ALICE.uri) == (b"account-v1", 1)


# SQLite has one writer process: no other transaction can hold a row there.
@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
async def test_a_locked_account_or_key_is_not_waited_for_on_postgres(
    store: Store, store_url: str
) -> None:
    await create(store, one_time=2)
    other = await asyncpg.connect(store_url)
    try:
        await other.execute("BEGIN")
        await other.execute("SELECT 1 FROM sandbox_users WHERE uri = $1 FOR UPDATE", ALICE.uri)
        await other.execute("SELECT 1 FROM sandbox_one_time_keys WHERE key_id = 'k00' FOR UPDATE")
        with pytest.raises(asyncpg.exceptions.LockNotAvailableError) as refused:
            await store.write("lock", lambda tx: sandbox_store.lock_olm_version(tx, ALICE.uri))
        assert is_lock_not_available(refused.value)
        claimed = await store.write(
            "claim", lambda tx: sandbox_store.claim_one_time_key(tx, ALICE.uri, 5)
        )
        assert claimed == key(1)  # k00 is being claimed elsewhere: skipped, not shared
        await other.execute("ROLLBACK")
    finally:
        await other.close()


async def test_one_time_keys_are_claimed_once_then_the_fallback_remains(store: Store) -> None:
    await create(store, one_time=2)

    async def claim(tx: Tx) -> StoredKey | None:
        return await sandbox_store.claim_one_time_key(tx, ALICE.uri, 2000)

    assert await sandbox_store.unclaimed_key_count(store, ALICE.uri) == 2
    assert await store.write("claim", claim) == key(0)
    assert await store.write("claim", claim) == key(1)
    assert await store.write("claim", claim) is None
    assert await sandbox_store.unclaimed_key_count(store, ALICE.uri) == 0
    assert await sandbox_store.fallback_key(store, ALICE.uri) == ("fb", "fbkey", "fbsig")
    await store.write(
        "replenish", lambda tx: sandbox_store.publish_one_time_keys(tx, ALICE.uri, [key(7)])
    )
    assert await sandbox_store.unclaimed_key_count(store, ALICE.uri) == 1


async def test_the_inbox_keeps_one_entry_per_message_in_arrival_order(store: Store) -> None:
    await create(store)

    async def deliver(tx: Tx, message_id: str, at: int, sealed: bytes) -> None:
        await sandbox_store.deliver(tx, ALICE.uri, message_id, at, sealed)

    await store.write("d", lambda tx: deliver(tx, "m2", 10, b"second"))
    await store.write("d", lambda tx: deliver(tx, "m1", 20, b"first"))
    await store.write("d", lambda tx: deliver(tx, "m2", 30, b"again"))  # a redelivery
    assert await sandbox_store.has_received(store, ALICE.uri, "m1")
    assert not await sandbox_store.has_received(store, ALICE.uri, "m3")
    assert await sandbox_store.inbox(store, ALICE.uri, 10) == [(10, b"second"), (20, b"first")]
    assert await sandbox_store.inbox(store, ALICE.uri, 1) == [(10, b"second")]
