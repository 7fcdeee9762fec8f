"""Provider state as several replicas see it: suspension through a shared database."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.service.providers import ProviderRegistry
from gateway.store import Tx, open_store


async def test_another_replica_sees_a_suspension_within_the_ttl(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'gw.db'}")
    try:

        async def unit(tx: Tx) -> None:
            await tx.execute(
                "INSERT INTO interop_requests (id, organisation, contact_email, services, "
                "functionalities, jwks, status, status_token_hash, received_at, deadline_at) "
                "VALUES ('r', 'o', 'e@x.org', '[]', '[]', '{}', 'approved', '-', 0, 0)"
            )
            await tx.execute(
                "INSERT INTO providers (client_id, request_id, organisation, jwks, state, "
                "services, functionalities, scopes, created_at, updated_at) "
                "VALUES ('p', 'r', 'o', '{\"keys\": []}', 'active', '[]', '[]', '[]', 0, 0)"
            )

        await store.write("setup", unit)
        here = ProviderRegistry(store, state_ttl_s=0.2)
        there = ProviderRegistry(store, state_ttl_s=0.2)
        assert await there.state("p") == "active"
        await here.suspend("p", actor="admin", reason=None)
        assert await here.state("p") == "suspended"  # at once where it happened
        assert await there.state("p") == "active"  # still cached over there ...
        await asyncio.sleep(0.25)
        assert await there.state("p") == "suspended"  # ... until the TTL runs out
        assert await there.state("missing") is None
    finally:
        await store.close()
