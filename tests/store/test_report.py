"""gateway/store/report.py on both backends: what the report reads of providers and requests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.store import Store, Tx, open_store
from gateway.store import report as report_store


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await open_store(store_url, pool_size=4)
    yield opened
    await opened.close()


async def add_request(store: Store, request_id: str, *, provider_at: int | None) -> None:
    async def unit(tx: Tx) -> None:
        await tx.execute(
            "INSERT INTO interop_requests (id, organisation, contact_email, services, "
            "functionalities, jwks, status, status_token_hash, received_at, deadline_at) "
            "VALUES ($1, 'Acme', 'a@example.org', '[]', '[]', '{}', 'approved', 'h', 10, 20)",
            request_id,
        )
        if provider_at is not None:
            await tx.execute(
                "INSERT INTO providers (client_id, request_id, organisation, jwks, state, "
                "services, functionalities, scopes, created_at, updated_at) "
                "VALUES ($1, $2, 'Acme', '{}', 'active', '[]', '[]', '[]', $3, $3)",
                f"client-{request_id}", request_id, provider_at,
            )  # fmt: skip

    await store.write("add_request", unit)


async def test_nothing_yet(store: Store) -> None:
    assert await report_store.provider_created_by_request(store) == {}
    assert await report_store.interop_request_rows(store) == []


async def test_requests_and_when_their_providers_went_live(store: Store) -> None:
    await add_request(store, "req-1", provider_at=15)
    await add_request(store, "req-2", provider_at=None)
    assert await report_store.provider_created_by_request(store) == {"req-1": 15}
    rows = sorted(await report_store.interop_request_rows(store), key=lambda r: r["id"])
    assert [(r["id"], r["status"], r["received_at"], r["deadline_at"]) for r in rows] == [
        ("req-1", "approved", 10, 20),
        ("req-2", "approved", 10, 20),
    ]
