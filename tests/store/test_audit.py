"""gateway/store/audit.py on both backends: record rows, chain heads and spans, checkpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.store import INTEGRITY_ERRORS, Store, Tx, open_store
from gateway.store import audit as audit_store
from gateway.store.audit import RECORD_COLUMNS, CheckpointRow


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await open_store(store_url, pool_size=4)
    yield opened
    await opened.close()


def record(chain_id: str, seq: int, at: int) -> list[Any]:
    """Column values of a record row, in RECORD_COLUMNS order."""
    values: dict[str, Any] = {
        "action": "message.accept", "actor": "provider", "at": at, "attrs": '{"service":"x"}',
        "chain_id": chain_id, "client_id": "acme", "duration_us": 1500, "method": "POST",
        "payload_sha256": None, "payload_size": None, "pseudonym_key": "k1",
        "request_id": f"r{seq}", "route": "/v1/messages", "seq": seq, "status": 202,
        "subjects": '["p1"]', "v": 1, "hash": f"{seq:064x}",
    }  # fmt: skip
    return [values[column] for column in RECORD_COLUMNS]


async def append(store: Store, chain_id: str, seqs: range, at: int = 1000) -> None:
    async def unit(tx: Tx) -> None:
        for seq in seqs:
            await audit_store.insert_record(tx, record(chain_id, seq, at + seq))

    await store.write("append", unit)


def checkpoint(chain_id: str, seq: int) -> CheckpointRow:
    return CheckpointRow(chain_id, seq, f"{seq:064x}", 5000 + seq, "key1", f"sig{seq}")


async def put_checkpoints(store: Store, *cps: CheckpointRow) -> None:
    async def unit(tx: Tx) -> None:
        for cp in cps:
            await audit_store.insert_checkpoint(tx, cp)

    await store.write("checkpoints", unit)


async def test_an_empty_log(store: Store) -> None:
    assert await audit_store.chain_head(store, "main") is None
    assert await audit_store.chain_heads(store) == {}
    assert await audit_store.chain_spans(store, 0, 2**62) == []
    assert await audit_store.last_checkpoint_seq(store, "main") is None
    assert await audit_store.latest_checkpoint(store, "main") is None
    assert await audit_store.all_checkpoints(store) == []


async def test_a_record_row_reads_back_by_position(store: Store) -> None:
    await append(store, "main", range(1, 2))
    pages = [page async for page in audit_store.record_pages(store, "main", 0, 1)]
    assert [list(row) for page in pages for row in page] == [record("main", 1, 1001)]


async def test_the_head_is_the_last_record_of_its_chain(store: Store) -> None:
    await append(store, "main", range(1, 4))
    await append(store, "other", range(1, 8))
    assert await audit_store.chain_head(store, "main") == (3, f"{3:064x}")
    assert await audit_store.chain_heads(store) == {"main": 3, "other": 7}
    assert list(await audit_store.chain_heads(store)) == ["main", "other"]


async def test_the_head_read_inside_a_unit_sees_its_own_appends(store: Store) -> None:
    async def unit(tx: Tx) -> int:
        await audit_store.insert_record(tx, record("main", 1, 1))
        head = await audit_store.chain_head(tx, "main")
        assert head is not None
        return head.seq

    assert await store.write("append", unit) == 1


async def test_a_seq_is_taken_once_per_chain(store: Store) -> None:
    await append(store, "main", range(1, 2))
    with pytest.raises(INTEGRITY_ERRORS):
        await append(store, "main", range(1, 2))
    assert await audit_store.chain_heads(store) == {"main": 1}


async def test_pages_cover_a_seq_range_in_order(store: Store) -> None:
    await append(store, "main", range(1, 12))
    await append(store, "other", range(1, 3))
    pages = [page async for page in audit_store.record_pages(store, "main", 2, 9, page=3)]
    seq = RECORD_COLUMNS.index("seq")
    assert [[row[seq] for row in page] for page in pages] == [[3, 4, 5], [6, 7, 8], [9]]
    assert [page async for page in audit_store.record_pages(store, "main", 5, 5)] == []


async def test_spans_are_the_records_inside_a_time_range(store: Store) -> None:
    await append(store, "main", range(1, 11), at=1000)  # at = 1001..1010
    await append(store, "other", range(1, 3), at=2000)
    assert await audit_store.chain_spans(store, 1003, 1006) == [("main", 3, 6)]
    spans = await audit_store.chain_spans(store, 0, 2**62)
    assert [tuple(s) for s in spans] == [("main", 1, 10), ("other", 1, 2)]
    assert await audit_store.record_hash(store, "main", 2) == f"{2:064x}"
    assert await audit_store.record_hash(store, "main", 99) is None


async def test_checkpoints_read_back(store: Store) -> None:
    await put_checkpoints(
        store, checkpoint("main", 10), checkpoint("main", 20), checkpoint("other", 5)
    )
    assert await audit_store.last_checkpoint_seq(store, "main") == 20
    assert await audit_store.latest_checkpoint(store, "main") == checkpoint("main", 20)
    assert await audit_store.checkpoints_between(store, "main", 1, 15) == [checkpoint("main", 10)]
    assert sorted(await audit_store.all_checkpoints(store)) == [
        checkpoint("main", 10),
        checkpoint("main", 20),
        checkpoint("other", 5),
    ]


async def test_a_rolled_back_unit_takes_its_record_along(store: Store) -> None:
    async def fails(tx: Tx) -> None:
        await audit_store.insert_record(tx, record("main", 2, 2))
        raise ValueError("the effect failed")

    await append(store, "main", range(1, 2))
    with pytest.raises(ValueError):
        await store.write("fails", fails)
    assert await audit_store.chain_head(store, "main") == (1, f"{1:064x}")
