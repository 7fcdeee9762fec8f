"""gateway/store/transitions.py on each backend."""

from __future__ import annotations

from gateway.store import Store, Tx
from gateway.store.transitions import Transition, record_transition, transitions_of
from tests.store.onboarding_fixtures import store

__all__ = ["store"]


async def test_transitions_read_back_per_subject_in_order(store: Store) -> None:
    async def unit(tx: Tx) -> None:
        await record_transition(
            tx, kind="request", subject="r1", before=None, after="received",
            actor="requester", reason=None, at=1,
        )  # fmt: skip
        await record_transition(
            tx, kind="provider", subject="r1", before=None, after="active",
            actor="admin", reason="x", at=2,
        )  # fmt: skip
        await record_transition(
            tx, kind="request", subject="r1", before="received", after="approved",
            actor="admin", reason="ok", at=3,
        )  # fmt: skip

    await store.write("test_transitions", unit)
    assert await transitions_of(store, "request", "r1") == [
        Transition(from_status=None, to_status="received", actor="requester", reason=None, at=1),
        Transition(from_status="received", to_status="approved", actor="admin", reason="ok", at=3),
    ]
    assert [t.to_status for t in await transitions_of(store, "provider", "r1")] == ["active"]
    assert await transitions_of(store, "request", "other") == []
