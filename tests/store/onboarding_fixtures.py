"""A store on each backend, with one request and its provider, for the onboarding store tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.store import Store, Tx, open_store
from gateway.store.interop_requests import InteropRequestRecord, add_request
from gateway.store.providers import add_provider

REQUEST = InteropRequestRecord(
    id="r1",
    status="received",
    organisation="Acme",
    contact_email="interop@acme.example",
    services=["whatsapp"],
    functionalities=["text"],
    jwks=[{"kty": "OKP", "crv": "Ed25519", "x": "abc", "kid": "k1"}],
    webhook_url="https://hooks.example.org/in",
    received_at=1_000,
    deadline_at=2_000,
)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await open_store(store_url, pool_size=4)
    yield opened
    await opened.close()


async def add_acme(store: Store, *, secret: str | None = "whsec_1") -> None:
    """REQUEST and the provider `acme` made from it."""

    async def unit(tx: Tx) -> None:
        await add_request(tx, REQUEST, status_token_hash="h1")
        await add_provider(
            tx,
            client_id="acme",
            request_id=REQUEST.id,
            organisation=REQUEST.organisation,
            jwks=REQUEST.jwks,
            webhook_url=REQUEST.webhook_url,
            webhook_secret=secret,
            services=REQUEST.services,
            functionalities=REQUEST.functionalities,
            scopes=["messages"],
            at=1_500,
        )

    await store.write("test_add_acme", unit)
