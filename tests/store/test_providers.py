"""gateway/store/providers.py on each backend."""

from __future__ import annotations

from gateway.store import Store, Tx
from gateway.store import providers as p
from tests.store.onboarding_fixtures import REQUEST, add_acme, store

__all__ = ["store"]


async def test_a_provider_reads_back_as_stored(store: Store) -> None:
    await add_acme(store)
    record = await p.provider_record(store, "acme")
    assert record is not None
    assert record.jwks == REQUEST.jwks
    assert record.provider.state == "active"
    assert record.provider.scopes == ["messages"]
    assert (record.provider.created_at, record.provider.updated_at) == (1_500, 1_500)
    assert await p.provider_record(store, "nobody") is None
    assert await p.provider_scopes(store, "acme") == ["messages"]
    assert await p.provider_scopes(store, "nobody") is None
    assert await p.webhook_target(store, "acme") == p.WebhookTarget(
        url="https://hooks.example.org/in", secret="whsec_1"
    )
    assert await p.has_webhook(store, "acme") is True
    assert await p.has_webhook(store, "nobody") is None


async def test_state_changes_and_lists_by_state(store: Store) -> None:
    await add_acme(store)

    async def suspend(tx: Tx) -> None:
        await p.set_provider_state(tx, "acme", "suspended", at=3_000)

    await store.write("test_suspend", suspend)
    assert await p.provider_state(store, "acme") == "suspended"
    assert await p.provider_state(store, "nobody") is None
    assert [x.client_id for x in await p.list_providers(store)] == ["acme"]
    assert [x.client_id for x in await p.list_providers(store, "suspended")] == ["acme"]
    assert await p.list_providers(store, "active") == []


async def test_the_webhook_secret_is_taken_once_then_replaced(store: Store) -> None:
    await add_acme(store)

    async def take(tx: Tx) -> str | None:
        return await p.take_unshown_webhook_secret(tx, "acme", at=2_000)

    assert await store.write("test_take", take) == "whsec_1"
    assert await store.write("test_take", take) is None

    async def rotate(tx: Tx) -> None:
        await p.replace_webhook_secret(tx, "acme", "whsec_2", at=4_000)

    await store.write("test_rotate", rotate)
    target = await p.webhook_target(store, "acme")
    assert target is not None and target.secret == "whsec_2"
    assert await store.write("test_take", take) is None  # a rotated secret counts as shown
