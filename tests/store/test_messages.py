"""store/messages.py on every backend: envelopes, idempotency keys, finishing a message."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest

from gateway.store import Store, Tx, messages, open_store
from gateway.store.messages import Envelope, KnownMessage

ENVELOPE = Envelope(
    id="gw_1", client_id="acme", client_msg_id="m-1", digest="d1", kind="message",
    service="instagram", sender="mimi://acme/u/alice", recipient="mimi://instagram/u/1",
    sent_at=5, size=42,
)  # fmt: skip


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await open_store(store_url, pool_size=2)
    yield opened
    await opened.close()


async def row_of(store: Store, message_id: str) -> dict[str, object]:
    row = await store.fetchrow("SELECT * FROM relay_messages WHERE id = $1", message_id)
    assert row is not None
    return dict(row)


async def test_an_outbound_message_is_found_by_its_key_and_keeps_its_payload(
    store: Store,
) -> None:
    async def add(tx: Tx) -> None:
        await messages.add_outbound(tx, ENVELOPE, "s1.1.sealed", 1000)

    await store.write("add", add)
    assert await messages.find_by_key(store, "acme", "m-1") == KnownMessage(id="gw_1", digest="d1")
    assert await messages.find_by_key(store, "other", "m-1") is None
    row = await row_of(store, "gw_1")
    assert (row["direction"], row["status"]) == ("outbound", "accepted")
    assert row["payload"] == "s1.1.sealed"
    assert (row["accepted_at"], row["finished_at"], row["size"]) == (1000, None, 42)


async def test_a_key_is_used_once_per_provider(store: Store) -> None:
    assert (
        await store.write("add", lambda tx: messages.add_outbound(tx, ENVELOPE, "p", 1000)) is None
    )
    again = msgspec.structs.replace(ENVELOPE, id="gw_2", digest="d2")

    async def add_again(tx: Tx) -> KnownMessage | None:
        return await messages.add_outbound(tx, again, "p2", 1001)

    # The second use of the key writes nothing and names the message that holds it.
    assert await store.write("add_again", add_again) == KnownMessage(id="gw_1", digest="d1")
    assert await store.fetchrow("SELECT id FROM relay_messages WHERE id = 'gw_2'") is None
    assert (await row_of(store, "gw_1"))["payload"] == "p"
    other = msgspec.structs.replace(ENVELOPE, id="gw_3", client_id="other")
    assert await store.write("other", lambda tx: messages.add_outbound(tx, other, "p", 1)) is None


async def test_an_inbound_message_is_delivered_without_a_payload(store: Store) -> None:
    inbound = msgspec.structs.replace(
        ENVELOPE, id="gw_in", client_msg_id="in:instagram:message:n1",
        sender="mimi://instagram/u/1", recipient="mimi://acme/u/alice",
    )  # fmt: skip

    async def add(tx: Tx) -> KnownMessage | None:
        return await messages.add_inbound(tx, inbound, 2000)

    assert await store.write("add", add) is None
    row = await row_of(store, "gw_in")
    assert (row["direction"], row["status"], row["payload"]) == ("inbound", "delivered", None)
    assert row["finished_at"] == 2000
    # The platform's retry of the same webhook: nothing written, the first record named.
    again = msgspec.structs.replace(inbound, id="gw_in2")
    assert await store.write("again", lambda tx: messages.add_inbound(tx, again, 2100)) == (
        KnownMessage(id="gw_in", digest="d1")
    )
    assert await store.fetchrow("SELECT id FROM relay_messages WHERE id = 'gw_in2'") is None


async def test_the_provider_id_of_a_message_is_told_to_its_sender_only(store: Store) -> None:
    await store.write("add", lambda tx: messages.add_outbound(tx, ENVELOPE, "p", 1000))
    assert await messages.client_msg_id_of(store, "gw_1", "mimi://acme/u/alice") == "m-1"
    assert await messages.client_msg_id_of(store, "gw_1", "mimi://acme/u/bob") is None
    assert await messages.client_msg_id_of(store, "gw_nope", "mimi://acme/u/alice") is None


async def test_finishing_drops_the_payload_and_keeps_the_envelope(store: Store) -> None:
    await store.write("add", lambda tx: messages.add_outbound(tx, ENVELOPE, "p", 1000))
    await store.write("finish", lambda tx: messages.finish(tx, "gw_1", "delivered", 3000))
    row = await row_of(store, "gw_1")
    assert (row["status"], row["finished_at"], row["payload"]) == ("delivered", 3000, None)
    assert await messages.find_by_key(store, "acme", "m-1") == KnownMessage(id="gw_1", digest="d1")
