"""gateway/store/interop_requests.py on each backend."""

from __future__ import annotations

import msgspec
import pytest

from gateway.store import Store, Tx
from gateway.store import interop_requests as r
from tests.store.onboarding_fixtures import REQUEST, add_acme, store

__all__ = ["store"]


async def test_a_request_reads_back_and_is_decided(store: Store) -> None:
    await add_acme(store)
    assert await r.get_request(store, "r1") == REQUEST
    assert await r.get_request(store, "nope") is None
    assert await r.status_token_hash(store, "r1") == "h1"
    assert await r.status_token_hash(store, "nope") is None
    assert await r.request_client_id(store, "r1") is None

    async def approve(tx: Tx) -> None:
        await r.decide_request(tx, "r1", "approved", reason=None, client_id="acme", at=1_500)

    await store.write("test_approve", approve)
    assert await r.get_request(store, "r1") == msgspec.structs.replace(
        REQUEST, status="approved", decided_at=1_500, client_id="acme"
    )
    assert await r.request_client_id(store, "r1") == "acme"


async def test_requests_list_nearest_deadline_first(store: Store) -> None:
    later = msgspec.structs.replace(REQUEST, id="r2", deadline_at=9_000)
    sooner = msgspec.structs.replace(REQUEST, id="r3", deadline_at=1_500, status="rejected")

    async def unit(tx: Tx) -> None:
        for request in (later, REQUEST, sooner):
            await r.add_request(tx, request, status_token_hash="h")

    await store.write("test_add", unit)
    assert [x.id for x in await r.list_requests(store, limit=10)] == ["r3", "r1", "r2"]
    assert [x.id for x in await r.list_requests(store, limit=2)] == ["r3", "r1"]
    assert [x.id for x in await r.list_requests(store, "received", limit=10)] == ["r1", "r2"]


async def test_a_phase_change_sets_only_the_named_fields(store: Store) -> None:
    await add_acme(store)

    async def plan(tx: Tx) -> None:
        await r.update_phase(tx, "r1", "planned", planned_at=2_000, plan_live_at=9_000)

    await store.write("test_plan", plan)
    planned = await r.get_request(store, "r1")
    assert planned == msgspec.structs.replace(
        REQUEST, status="planned", planned_at=2_000, plan_live_at=9_000
    )

    async def extend(tx: Tx) -> None:
        await r.update_phase(tx, "r1", "planned", extended_to=12_000)

    await store.write("test_extend", extend)
    extended = await r.get_request(store, "r1")
    assert extended is not None and extended.plan_live_at == 9_000
    assert extended.effective_deadline_at == 12_000

    async def bad(tx: Tx) -> None:
        await r.update_phase(tx, "r1", "live", status_token_hash="x")

    with pytest.raises(ValueError, match="not phase fields"):
        await store.write("test_bad", bad)
