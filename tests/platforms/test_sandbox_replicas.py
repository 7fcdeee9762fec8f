"""The sandbox's Olm accounts and one-time keys when two replicas share the database."""

from __future__ import annotations

import secrets

import asyncpg
import pytest

from gateway.platforms.sandbox_state import SandboxState, SandboxUser, StaleAccount
from gateway.store import open_store

URI = "mimi://whatsapp/u/491511"


async def test_an_account_is_saved_only_over_the_version_it_was_read_at(
    postgres_url: str,
) -> None:
    key = secrets.token_bytes(32)
    a_store, b_store = await open_store(postgres_url), await open_store(postgres_url)
    a, b = SandboxState(a_store, key), SandboxState(b_store, key)
    other = await asyncpg.connect(postgres_url)
    try:
        await a.create(SandboxUser(uri=URI, service="whatsapp", native_id="491511", name="S"))
        party_a, version_a = await a.party(URI)
        party_b, version_b = await b.party(URI)
        assert version_a == version_b == 0
        await a_store.write("save", lambda tx: a.save_party_in(tx, URI, party_a, version_a))
        with pytest.raises(StaleAccount):  # b's copy is out of date: it must read again
            await b_store.write("save", lambda tx: b.save_party_in(tx, URI, party_b, version_b))
        party_b, version_b = await b.party(URI)
        assert version_b == 1
        # A replica mid-transaction on the account: refused at once (NOWAIT), not waited for.
        await other.execute("BEGIN")
        await other.execute("SELECT 1 FROM sandbox_users WHERE uri = $1 FOR UPDATE", URI)
        with pytest.raises(StaleAccount):
            await b_store.write("save", lambda tx: b.save_party_in(tx, URI, party_b, version_b))
        await other.execute("ROLLBACK")
        await b_store.write("save", lambda tx: b.save_party_in(tx, URI, party_b, version_b))
    finally:
        await other.close()
        await a_store.close()
        await b_store.close()


async def test_a_one_time_key_being_claimed_elsewhere_is_skipped_not_shared(
    postgres_url: str,
) -> None:
    key = secrets.token_bytes(32)
    store = await open_store(postgres_url)
    state = SandboxState(store, key)
    other = await asyncpg.connect(postgres_url)
    try:
        await state.create(SandboxUser(uri=URI, service="whatsapp", native_id="491511", name="S"))
        await other.execute("BEGIN")
        held = await other.fetchval(
            "SELECT key_id FROM sandbox_one_time_keys WHERE user_uri = $1 "
            "ORDER BY key_id LIMIT 1 FOR UPDATE",
            URI,
        )
        bundle, _ = await state.claim(URI)
        assert bundle is not None and bundle.one_time_key is not None
        assert bundle.one_time_key.key_id != held
        await other.execute("ROLLBACK")
    finally:
        await other.close()
        await store.close()
