"""The sandbox keeps unpickled Olm accounts in memory while their stored version holds."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.crypto import OlmParty
from gateway.platforms.sandbox_state import SandboxState, SandboxUser, StaleAccount
from gateway.store import Store
from gateway.store import sandbox as sandbox_store

URI = "mimi://whatsapp/u/15550001"
KEY = bytes(range(32))


@pytest.fixture
def restores(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts pickle restores (the cost the cache saves)."""
    count: list[int] = []
    original = OlmParty.from_pickle

    def counting(pickled: bytes, key: bytes) -> Any:
        count.append(1)
        return original(pickled, key)

    monkeypatch.setattr(OlmParty, "from_pickle", staticmethod(counting))
    return count


async def created(store: Store) -> SandboxState:
    state = SandboxState(store, KEY)
    await state.create(SandboxUser(uri=URI, service="whatsapp", native_id="15550001", name="A"))
    return state


async def save(state: SandboxState, party: OlmParty, version: int) -> None:
    await state.store.write("save", lambda tx: state.save_party_in(tx, URI, party, version))


async def test_a_saved_account_is_reused_without_restoring_its_pickle(
    store: Store, restores: list[int]
) -> None:
    state = await created(store)
    party, version = await state.party(URI)
    await save(state, party, version)
    again, again_version = await state.party(URI)
    assert again is party and again_version == version + 1
    assert len(restores) == 1


async def test_another_replicas_save_invalidates_the_cached_account(
    store: Store, restores: list[int]
) -> None:
    mine, other = await created(store), SandboxState(store, KEY)  # two replicas, one DB
    party, version = await mine.party(URI)
    await save(mine, party, version)
    theirs, their_version = await other.party(URI)
    await save(other, theirs, their_version)
    fresh, fresh_version = await mine.party(URI)
    assert fresh is not party and fresh_version == version + 2  # restored from the new pickle
    assert len(restores) == 3


async def test_an_account_whose_save_failed_is_restored_again(
    store: Store, restores: list[int]
) -> None:
    state = await created(store)
    party, version = await state.party(URI)
    await save(state, party, version)
    cached, cached_version = await state.party(URI)
    with pytest.raises(StaleAccount):
        await save(state, cached, cached_version - 1)  # rolled back: never cached again
    restored, restored_version = await state.party(URI)
    assert restored is not cached and restored_version == version + 1
    assert len(restores) == 2


async def test_a_user_is_read_once_and_one_not_found_is_looked_up_again(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine, other = SandboxState(store, KEY), SandboxState(store, KEY)  # two replicas, one DB
    assert await mine.user(URI) is None  # not created yet: not remembered as missing
    await other.create(SandboxUser(uri=URI, service="whatsapp", native_id="15550001", name="A"))
    found = await mine.user(URI)
    assert found is not None and found.native_id == "15550001"
    reads: list[str] = []
    original = sandbox_store.user

    async def counting(db: Any, uri: str) -> Any:
        reads.append(uri)
        return await original(db, uri)

    monkeypatch.setattr(sandbox_store, "user", counting)
    assert await mine.user(URI) == found
    assert reads == []  # kept: a user never changes
