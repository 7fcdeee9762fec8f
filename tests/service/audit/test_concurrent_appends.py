"""Concurrent appends to one audit chain, on every storage backend: no lost or forked records."""

from __future__ import annotations

import asyncio

from gateway.service.audit.log import AuditLog
from gateway.service.audit.pseudonym import Pseudonymizer
from gateway.store import open_store


async def test_concurrent_events_extend_one_unbroken_chain(store_url: str) -> None:
    store = await open_store(store_url, pool_size=8)
    try:
        audit = AuditLog(store, chain_id="replica-a", pseudonymize=Pseudonymizer(b"k" * 32))
        records = await asyncio.gather(
            *(audit.record_event(action="test_event", subjects=[f"u{i}"]) for i in range(40))
        )
        assert sorted(r.seq for r in records) == list(range(1, 41))
        rows = await store.fetch(
            "SELECT seq FROM audit_records WHERE chain_id = $1 ORDER BY seq", "replica-a"
        )
        assert [r["seq"] for r in rows] == list(range(1, 41))
    finally:
        await store.close()
