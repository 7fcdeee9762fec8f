"""gateway.store.groups on both backends: creation, membership changes, epochs, co-membership."""

from __future__ import annotations

from gateway.store import Store, Tx
from gateway.store import groups as g
from gateway.store.groups import GroupState

G = "mimi://acme/g/abc"
ANN = "mimi://acme/u/ann"
BOB = "mimi://other/u/bob"
CAT = "mimi://acme/u/cat"


async def test_group_lifecycle(store: Store) -> None:
    assert await g.group_state(store, G) is None

    async def create(tx: Tx) -> None:
        await g.create_group(
            tx,
            uri=G,
            service="acme",
            name="n",
            members={ANN: "admin", BOB: "member"},
            client_id="c1",
            client_ref="r1",
            digest="d",
            at=1,
        )

    await store.write("test_create", create)
    assert await g.group_state(store, G) == GroupState(
        G, "acme", "n", 0, {ANN: "admin", BOB: "member"}
    )
    assert await g.is_member(store, G, BOB)
    assert await g.co_members(store, ANN, BOB)
    assert not await g.co_members(store, ANN, CAT)
    assert await g.shares_group_with_provider(store, ANN, "other")
    assert not await g.shares_group_with_provider(store, ANN, "othe")
    assert not await g.shares_group_with_provider(store, CAT, "other")

    async def change(tx: Tx) -> None:
        await g.change_members(tx, G, epoch=1, put={CAT: "member"}, drop=[BOB])

    await store.write("test_change", change)
    state = await g.group_state(store, G)
    assert state is not None and state.epoch == 1
    assert state.members == {ANN: "admin", CAT: "member"}
    assert not await g.is_member(store, G, BOB)
    assert not await g.co_members(store, ANN, BOB)
    assert await g.co_members(store, CAT, ANN)
    assert await g.epoch_members(store, G, 0) == sorted([ANN, BOB])
    assert await g.epoch_members(store, G, 1) == sorted([ANN, CAT])
    assert await g.totals(store) == (1, 2)


async def test_lookups_sessions_and_locks(store: Store) -> None:
    assert await g.totals(store) == (0, 0)

    async def create(tx: Tx) -> None:
        await g.create_group(
            tx, uri=G, service="acme", name="n", members={ANN: "admin", BOB: "member"},
            client_id="c1", client_ref="r1", digest="d1", at=1,
        )  # fmt: skip

    await store.write("test_create", create)
    assert await g.exists(store, G) and not await g.exists(store, "mimi://acme/g/none")
    assert await g.group_by_ref(store, "c1", "r1") == (G, "d1")
    assert await g.group_by_ref(store, "c2", "r1") is None
    assert await g.has_provider_member(store, G, "other")
    assert not await g.has_provider_member(store, G, "othe")  # a prefix, not a provider

    async def share(tx: Tx) -> tuple[tuple[str, int], GroupState | None]:
        state = await g.lock_group(tx, G)
        bound = await g.add_session(tx, G, "s1", ANN, 0, 5)
        return bound, state

    bound, locked = await store.write("test_share", share)
    assert bound == (ANN, 0) and locked is not None and locked.epoch == 0
    # A session keeps its first binding: shared again (by anyone, later) it stays ANN's, epoch 0.
    again = await store.write("test_again", lambda tx: g.add_session(tx, G, "s1", BOB, 3, 9))
    assert again == (ANN, 0)
    assert await g.session_of(store, G, "s1") == (ANN, 0)
    assert await g.session_of(store, G, "s2") is None
    assert await g.totals(store) == (1, 2)
