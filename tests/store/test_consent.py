"""gateway.store.consent on both backends."""

from __future__ import annotations

from gateway.store import Store, Tx
from gateway.store import consent as c

WA = "mimi://whatsapp/u/491"


async def test_grants_and_revocations(store: Store) -> None:
    assert not await c.consent_allows(store, WA, "acme")

    async def grant(tx: Tx) -> None:
        await c.grant_consent(tx, WA, "acme", at=1)
        await c.grant_consent(tx, WA, "acme", at=2)  # twice: still one consent
        await c.grant_consent(tx, WA, "beta", at=1)

    await store.write("grant", grant)
    assert await c.consent_allows(store, WA, "acme")
    assert not await c.consent_allows(store, "mimi://whatsapp/u/492", "acme")
    assert await c.consented_providers(store, WA) == {"acme", "beta"}
    await store.write("revoke", lambda tx: c.revoke_consent(tx, WA, "acme"))
    assert not await c.consent_allows(store, WA, "acme")
    assert await c.consented_providers(store, WA) == {"beta"}


async def test_consent_to_all_allows_every_provider(store: Store) -> None:
    await store.write("all", lambda tx: c.grant_consent(tx, WA, c.ALL, at=1))
    assert await c.consent_allows(store, WA, "anyone")
    assert await store.read("in_unit", lambda tx: c.consent_allows(tx, WA, "other"))
