"""store/outbox.py on every backend: enqueue, claim in order, lease, outcomes, dead letters."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec
import pytest

from gateway.store import Store, Tx, is_lock_not_available, messages, open_store, outbox
from gateway.store.messages import Envelope, KnownMessage

NOW = 1_000_000
BASE = Envelope(
    id="", client_id="acme", client_msg_id="", digest="d", kind="message", service="whatsapp",
    sender="mimi://acme/u/alice", recipient="", sent_at=1, size=2,
)  # fmt: skip


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await open_store(store_url, pool_size=2)
    yield opened
    await opened.close()


async def accept(store: Store, message_id: str, recipient: str, at: int = NOW) -> None:
    envelope = msgspec.structs.replace(
        BASE, id=message_id, client_msg_id=message_id, recipient=recipient
    )

    async def unit(tx: Tx) -> None:
        await messages.add_outbound(tx, envelope, "payload", at)
        await outbox.enqueue(tx, message_id, f"{BASE.sender}\n{recipient}", "whatsapp", at)

    await store.write("accept", unit)


async def claim(store: Store, now: int = NOW, replica: str = "r", **kw: int | str) -> list[str]:
    async def unit(tx: Tx) -> list[str]:
        rows = await outbox.claim(tx, now, 1000, 10, replica, **kw)  # type: ignore[arg-type]
        return [row.message_id for row in rows]

    return await store.write("claim", unit)


async def test_only_the_head_of_each_conversation_is_claimed_and_leased(store: Store) -> None:
    for mid, to in (("a1", "u/a"), ("b1", "u/b"), ("a2", "u/a")):
        await accept(store, mid, to)
    assert await claim(store) == ["a1", "b1"]
    assert await claim(store) == []  # leased
    assert await claim(store, now=NOW + 1000) == ["a1", "b1"]  # the leases expired
    assert await outbox.stats(store) == (3, NOW)


async def test_runs_take_a_conversation_in_order(store: Store) -> None:
    for mid, to in (("a1", "u/a"), ("b1", "u/b"), ("a2", "u/a"), ("a3", "u/a")):
        await accept(store, mid, to)
    assert await claim(store, per_conversation=2) == ["a1", "a2", "b1"]


async def test_a_retry_waits_and_is_claimable_again_when_due(store: Store) -> None:
    await accept(store, "a1", "u/a")
    await accept(store, "a2", "u/a")
    assert await claim(store) == ["a1"]
    await store.write("retry", lambda tx: outbox.retry_later(tx, 1, 1, NOW + 500, replica="r"))
    assert await claim(store) == []  # not due; nothing behind it either
    assert await claim(store, now=NOW + 500) == ["a1"]
    row = await store.fetchrow("SELECT attempts FROM relay_outbox WHERE message_id = 'a1'")
    assert row is not None and row["attempts"] == 1


async def test_only_the_holder_gives_a_row_back(store: Store) -> None:
    await accept(store, "a1", "u/a")
    assert await claim(store, replica="r") == ["a1"]
    await store.write("release", lambda tx: outbox.release(tx, 1, replica="other"))
    assert await claim(store, replica="r") == []
    await store.write("release", lambda tx: outbox.release(tx, 1, replica="r"))
    assert await claim(store, replica="r") == ["a1"]


async def test_release_own_frees_this_process_leases(store: Store) -> None:
    await accept(store, "a1", "u/a")
    await accept(store, "b1", "u/b")
    assert await claim(store, replica="r") == ["a1", "b1"]
    freed = await store.write("release", lambda tx: outbox.release_own(tx, "someone-else"))
    # SQLite has one process: every lease is its own; PostgreSQL frees the replica's only.
    assert freed == (2 if store.dialect == "sqlite" else 0)
    assert await store.write("release", lambda tx: outbox.release_own(tx, "r")) == (
        0 if store.dialect == "sqlite" else 2
    )
    assert await claim(store, replica="r") == ["a1", "b1"]


async def test_finish_removes_the_item_and_the_payload_once(store: Store) -> None:
    await accept(store, "a1", "u/a")
    await accept(store, "a2", "u/a")
    await claim(store)
    finish = outbox.finish
    assert await store.write("finish", lambda tx: finish(tx, 1, "a1", "delivered", NOW + 5))
    assert not await store.write("finish", lambda tx: finish(tx, 1, "a1", "failed", NOW + 6))
    row = await store.fetchrow("SELECT status, payload, finished_at FROM relay_messages "
                               "WHERE id = 'a1'")  # fmt: skip
    assert row is not None and dict(row) == {
        "status": "delivered", "payload": None, "finished_at": NOW + 5
    }  # fmt: skip
    assert await claim(store, now=NOW + 10) == ["a2"]  # the next of the conversation
    assert await outbox.stats(store) == (1, NOW)


async def test_a_dead_letter_keeps_the_reason(store: Store) -> None:
    await accept(store, "a1", "u/a")
    await store.write(
        "dead", lambda tx: outbox.dead_letter(tx, "a1", "whatsapp", 3, "retries_exhausted", NOW)
    )
    assert await outbox.dead_letter_reason(store, "a1") == "retries_exhausted"
    assert await outbox.dead_letter_reason(store, "a2") is None
    assert await outbox.stats(store) == (1, NOW)


async def test_an_empty_outbox_has_no_oldest(store: Store) -> None:
    assert await outbox.stats(store) == (0, None)


async def accept_group(store: Store, message_id: str, members: list[str]) -> None:
    envelope = msgspec.structs.replace(
        BASE, id=message_id, client_msg_id=message_id, kind="group_message",
        recipient="mimi://whatsapp/g/g1",
    )  # fmt: skip

    async def unit(tx: Tx) -> None:
        await messages.add_group_item(tx, envelope, "payload", NOW)
        await outbox.enqueue_members(tx, message_id, envelope.recipient, "whatsapp", NOW, members)

    await store.write("accept", unit)


async def test_finishing_a_rounds_items_together(store: Store) -> None:
    for mid, to in (("a1", "u/a"), ("b1", "u/b"), ("c1", "u/c"), ("a2", "u/a")):
        await accept(store, mid, to)
    seqs = {
        r["message_id"]: r["seq"]
        for r in await store.fetch("SELECT seq, message_id FROM relay_outbox")
    }
    await claim(store)
    # c1 was finished meanwhile by a replica that took it over: its message stays as set then.
    await store.write("other", lambda tx: outbox.finish(tx, seqs["c1"], "c1", "failed", NOW + 1))
    items = [(seqs[m], m) for m in ("a1", "b1", "c1")]
    await store.write("round", lambda tx: outbox.finish_many(tx, items, "delivered", NOW + 5))
    await store.write("none", lambda tx: outbox.finish_many(tx, [], "delivered", NOW + 6))
    rows = await store.fetch(
        "SELECT id, status, payload, finished_at FROM relay_messages ORDER BY id"
    )
    assert [tuple(r) for r in rows] == [
        ("a1", "delivered", None, NOW + 5), ("a2", "accepted", "payload", None),
        ("b1", "delivered", None, NOW + 5), ("c1", "failed", None, NOW + 1),
    ]  # fmt: skip
    assert await claim(store, now=NOW + 10) == ["a2"]
    assert await outbox.stats(store) == (1, NOW)


async def test_a_group_item_is_finished_with_its_last_members_row(store: Store) -> None:
    await accept_group(store, "g1", ["mimi://whatsapp/u/1", "mimi://whatsapp/u/2"])
    rows = await store.write("claim", lambda tx: outbox.claim(tx, NOW, 1000, 10, "r"))
    assert sorted((r.member, r.conversation) for r in rows) == [
        ("mimi://whatsapp/u/1", "mimi://whatsapp/g/g1\nmimi://whatsapp/u/1"),
        ("mimi://whatsapp/u/2", "mimi://whatsapp/g/g1\nmimi://whatsapp/u/2"),
    ]
    first, second = rows

    def finish(row: outbox.Claimed, at: int) -> Any:
        return lambda tx: outbox.finish(tx, row.seq, "g1", "delivered", at, group=True)

    async def message() -> dict[str, Any]:
        row = await store.fetchrow("SELECT status, payload FROM relay_messages WHERE id = 'g1'")
        assert row is not None
        return dict(row)

    assert await store.write("finish", finish(first, NOW + 1))
    assert await message() == {"status": "accepted", "payload": "payload"}  # one member left
    assert await store.write("finish", finish(second, NOW + 2))
    assert await message() == {"status": "delivered", "payload": None}


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
async def test_finishing_a_group_row_does_not_wait_for_another_replica(
    store: Store, store_url: str
) -> None:
    await accept_group(store, "g1", ["mimi://whatsapp/u/1", "mimi://whatsapp/u/2"])
    rows = await store.write("claim", lambda tx: outbox.claim(tx, NOW, 1000, 10, "r"))
    other = await asyncpg.connect(store_url)
    try:  # another replica finishing the other member's row holds the message row
        await other.execute("BEGIN")
        await other.execute("SELECT 1 FROM relay_messages WHERE id = 'g1' FOR UPDATE")
        with pytest.raises(asyncpg.exceptions.LockNotAvailableError) as refused:
            await store.write(
                "finish",
                lambda tx: outbox.finish(tx, rows[0].seq, "g1", "delivered", NOW, group=True),
            )
        assert is_lock_not_available(refused.value)
        await other.execute("ROLLBACK")
    finally:
        await other.close()
    assert await outbox.stats(store) == (2, NOW)  # nothing was finished: tried again later


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
async def test_finishing_a_round_does_not_wait_for_another_replica(
    store: Store, store_url: str
) -> None:
    for mid, to in (("a1", "u/a"), ("b1", "u/b")):
        await accept(store, mid, to)
    rows = await store.write("claim", lambda tx: outbox.claim(tx, NOW, 1000, 10, "r"))
    items = [(row.seq, row.message_id) for row in rows]
    other = await asyncpg.connect(store_url)
    try:  # another replica's claim holds the lock of one of the round's rows
        await other.execute("BEGIN")
        await other.execute("SELECT 1 FROM relay_outbox WHERE seq = $1 FOR UPDATE", items[1][0])
        with pytest.raises(asyncpg.exceptions.LockNotAvailableError):
            await store.write(
                "round", lambda tx: outbox.finish_many(tx, items, "delivered", NOW + 5)
            )
        await other.execute("ROLLBACK")
    finally:
        await other.close()
    assert await outbox.stats(store) == (2, NOW)  # nothing was finished: tried again later


async def test_accepting_records_the_message_and_queues_it_once(store: Store) -> None:
    envelope = Envelope(
        id="gw_acc", client_id="acme", client_msg_id="m-acc", digest="d1", kind="message",
        service="whatsapp", sender="mimi://acme/u/a", recipient="mimi://whatsapp/u/1",
        sent_at=1, size=3,
    )  # fmt: skip

    async def accept(e: Envelope) -> KnownMessage | None:
        return await store.write(
            "accept", lambda tx: outbox.accept_outbound(tx, e, "sealed", 1000, "a\n1")
        )

    assert await accept(envelope) is None
    rows = await store.fetch("SELECT message_id, conversation, service FROM relay_outbox")
    assert [tuple(r) for r in rows] == [("gw_acc", "a\n1", "whatsapp")]
    # The same key again (another gateway id): nothing more written, the holder named.
    again = msgspec.structs.replace(envelope, id="gw_acc2", digest="d2")
    assert await accept(again) == KnownMessage(id="gw_acc", digest="d1")
    assert await store.fetchval("SELECT count(*) FROM relay_outbox") == 1
    assert await store.fetchval("SELECT count(*) FROM relay_messages") == 1
