"""gateway/store/tokens.py on each backend."""

from __future__ import annotations

from gateway.store import Store, Tx
from gateway.store.tokens import forget_expired_assertions, remember_assertion
from tests.store.onboarding_fixtures import store

__all__ = ["store"]


async def test_an_assertion_id_is_remembered_once_until_it_expires(store: Store) -> None:
    async def seen(client_id: str, jti: str, until: int) -> bool:
        async def unit(tx: Tx) -> bool:
            return await remember_assertion(tx, client_id, jti, until=until)

        return await store.write("test_seen", unit)

    assert await seen("acme", "j1", 1_000) is True
    assert await seen("acme", "j1", 1_000) is False  # a replay
    assert await seen("globex", "j1", 1_000) is True  # ids are per client
    assert await seen("acme", "j2", 5_000) is True

    async def sweep(tx: Tx) -> int:
        return await forget_expired_assertions(tx, before=2_000)

    assert await store.write("test_sweep", sweep) == 2
    assert await seen("acme", "j1", 1_000) is True  # forgotten once expired
    assert await seen("acme", "j2", 5_000) is False
