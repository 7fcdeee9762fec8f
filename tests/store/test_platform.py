"""gateway/store/platform.py on both backends: the http platform's user and message id maps."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.store import Store, Tx, open_store
from gateway.store import platform as platform_store


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await open_store(store_url, pool_size=4)
    yield opened
    await opened.close()


async def test_a_user_id_maps_back_to_its_uri_and_the_first_mapping_stays(store: Store) -> None:
    async def remember(tx: Tx, uri: str) -> None:
        await platform_store.remember_user(tx, "whatsapp", "4915100", uri)

    assert await platform_store.user_uri(store, "whatsapp", "4915100") is None
    await store.write("u", lambda tx: remember(tx, "mimi://acme/u/alice"))
    await store.write("u", lambda tx: remember(tx, "mimi://acme/u/other"))
    assert await platform_store.user_uri(store, "whatsapp", "4915100") == "mimi://acme/u/alice"
    assert await platform_store.user_uri(store, "messenger", "4915100") is None


async def test_a_message_id_is_found_under_either_spelling(store: Store) -> None:
    async def remember(tx: Tx, native_id: str, message_id: str) -> None:
        await platform_store.remember_message(tx, "whatsapp", native_id, message_id, 1000)

    await store.write("m", lambda tx: remember(tx, "wamid.ABC", "m-1"))
    await store.write("m", lambda tx: remember(tx, "wamid.ABC", "m-2"))  # a retry: kept first
    assert await platform_store.message_id(store, "whatsapp", "ABC", "wamid.ABC") == "m-1"
    assert await platform_store.message_id(store, "whatsapp", "wamid.ABC", "x") == "m-1"
    assert await platform_store.message_id(store, "whatsapp", "XYZ", "wamid.XYZ") is None
    assert await platform_store.message_id(store, "messenger", "ABC", "wamid.ABC") is None


async def test_message_ids_remembered_together_each_map_back_and_the_first_stays(
    store: Store,
) -> None:
    await store.write(
        "m", lambda tx: platform_store.remember_message(tx, "whatsapp", "wamid.A", "m-0", 1)
    )
    records = [("whatsapp", "wamid.A", "m-1"), ("whatsapp", "wamid.B", "m-2"),
               ("messenger", "mid.C", "m-3")]  # fmt: skip
    await store.write("m", lambda tx: platform_store.remember_messages(tx, records, 1000))
    await store.write("m", lambda tx: platform_store.remember_messages(tx, [], 1000))
    assert await platform_store.message_id(store, "whatsapp", "A", "wamid.A") == "m-0"
    assert await platform_store.message_id(store, "whatsapp", "B", "wamid.B") == "m-2"
    assert await platform_store.message_id(store, "messenger", "mid.C", "x") == "m-3"
    assert await platform_store.message_id(store, "whatsapp", "mid.C", "x") is None
