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
