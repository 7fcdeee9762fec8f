"""gateway.store.stats on both backends: the gauges' reads of database state."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.store import Store, Tx, open_store, stats


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await open_store(store_url, pool_size=4)
    yield opened
    await opened.close()


async def test_empty_database(store: Store) -> None:
    assert {"relay_outbox", "provider_events", "provider_event_seqs"} <= (
        await stats.existing_tables(store)
    )
    assert await stats.outbox_depth(store) == stats.QueueDepth(depth=0, oldest_at=None)
    assert await stats.one_time_keys_low_water(store) == {}
    assert await stats.newest_checkpoint_at(store, "chain") is None
    assert await stats.open_interop_requests(store, 0) == stats.OpenRequests(open=0, overdue=0)


async def test_counts_what_is_there(store: Store) -> None:
    async def unit(tx: Tx) -> None:
        for created in (500, 300):
            await tx.execute(
                "INSERT INTO relay_outbox (message_id, conversation, service, attempts, "
                "next_attempt_at, lease_until, created_at) VALUES ('m', 'c', 's', 0, 0, 0, $1)",
                created,
            )
        for user, client in (("u1", "acme"), ("u2", "acme"), ("u3", "globex")):
            await tx.execute(
                "INSERT INTO e2ee_identities (user_uri, client_id, identity_key, signing_key, "
                "updated_at) VALUES ($1, $2, 'i', 's', 0)",
                user,
                client,
            )
        for user, key in (("u1", "k1"), ("u1", "k2"), ("u3", "k1")):
            await tx.execute(
                "INSERT INTO e2ee_one_time_keys (user_uri, key_id, key, signature, uploaded_at) "
                "VALUES ($1, $2, 'k', 's', 0)",
                user,
                key,
            )
        await tx.execute(
            "INSERT INTO audit_checkpoints (chain_id, seq, hash, at, key_id, signature) "
            "VALUES ('chain', 1, 'h', 700, 'k', 's'), ('chain', 2, 'h', 900, 'k', 's')"
        )
        for request_id, status, deadline in (("a", "received", 100), ("b", "received", 5000),
                                             ("c", "approved", 100)):  # fmt: skip
            await tx.execute(
                "INSERT INTO interop_requests (id, organisation, contact_email, services, "
                "functionalities, jwks, status, status_token_hash, received_at, deadline_at) "
                "VALUES ($1, 'o', 'e', '[]', '[]', '{}', $2, 'h', 0, $3)",
                request_id,
                status,
                deadline,
            )

    await store.write("fill", unit)
    assert await stats.outbox_depth(store) == stats.QueueDepth(depth=2, oldest_at=300)
    assert await stats.one_time_keys_low_water(store) == {"acme": 0, "globex": 1}
    assert await stats.newest_checkpoint_at(store, "chain") == 900
    assert await stats.newest_checkpoint_at(store, "other") is None
    assert await stats.open_interop_requests(store, 1000) == stats.OpenRequests(open=2, overdue=1)
