"""Appending to the hash chain inside a write unit's batch, and the checkpoint writer.

The records of a group-commit batch are chained when the batch ends (`AuditLog` defers them
with `Tx.defer`): the head is read once, inside the batch's transaction, each record is hashed
onto the one before, and all go in with one multi-row insert. A unit rolled back to its
savepoint takes its records with it (they are never handed to the batch), so the chain holds
exactly the committed units' records, in order. Both backends run a replica's write units one
batch at a time; on PostgreSQL each replica writes its own chain_id, and the (chain_id, seq)
primary key turns any concurrent append into an error, never a fork.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import msgspec
import structlog

from gateway.clock import now_ms
from gateway.service.audit.checkpoints import Checkpoint, Signer
from gateway.service.audit.records import GENESIS, AuditRecord, chain_hash, row_values
from gateway.service.periodic import wait_event
from gateway.store import Store, StoreError, Tx
from gateway.store import audit as audit_store

log = structlog.get_logger(__name__)


async def append_record(tx: Tx, draft: AuditRecord) -> tuple[AuditRecord, bytes]:
    """Give `draft` the next seq of its chain, hash it onto the head and insert it."""
    [(record, digest)] = await append_records(tx, [draft])
    return record, digest


async def append_records(tx: Tx, drafts: Sequence[AuditRecord]) -> list[tuple[AuditRecord, bytes]]:
    """Chain `drafts` (all of one chain), in order, onto its head: one read, one insert."""
    if not drafts:
        return []
    head = await audit_store.chain_head(tx, drafts[0].chain_id)
    seq, prev = (0, GENESIS) if head is None else (head.seq, bytes.fromhex(head.hash))
    chained = []
    for draft in drafts:
        seq += 1
        record = msgspec.structs.replace(draft, seq=seq)
        prev = chain_hash(prev, record)
        chained.append((record, prev))
    await audit_store.insert_records(tx, [row_values(r, d) for r, d in chained])
    return chained


async def write_checkpoint(tx: Tx, chain_id: str, signer: Signer) -> Checkpoint | None:
    """Sign the chain's head unless the last checkpoint already covers it."""
    head = await audit_store.chain_head(tx, chain_id)
    if head is None:
        return None
    last = await audit_store.last_checkpoint_seq(tx, chain_id)
    if last is not None and last >= head.seq:
        return None
    cp = signer.sign(chain_id, head.seq, head.hash, now_ms())
    await audit_store.insert_checkpoint(
        tx, audit_store.CheckpointRow(cp.chain_id, cp.seq, cp.hash, cp.at, cp.key_id, cp.signature)
    )
    return cp


class Checkpointer:
    """Writes a signed checkpoint every `every` records or `interval_s` seconds, and at stop."""

    def __init__(
        self, store: Store, signer: Signer, chain_id: str, *, every: int, interval_s: float
    ) -> None:
        self._store = store
        self._signer = signer
        self._chain_id = chain_id
        self._every = every
        self._interval_s = interval_s
        self._since = 0
        self._due = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def appended(self) -> None:
        """Count one committed record (called from Tx.on_commit)."""
        self._since += 1
        if self._since >= self._every:
            self._due.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="audit-checkpoints")

    async def checkpoint(self) -> Checkpoint | None:
        """Sign the head now (if it moved since the last checkpoint)."""
        self._since = 0
        self._due.clear()
        signer, chain_id = self._signer, self._chain_id

        async def unit(tx: Tx) -> Checkpoint | None:
            return await write_checkpoint(tx, chain_id, signer)

        cp = await self._store.write("audit_checkpoint", unit)
        if cp is not None:
            log.info("audit_checkpoint_written", chain_id=cp.chain_id, seq=cp.seq)
        return cp

    async def _run(self) -> None:
        while True:
            await wait_event(self._due, self._interval_s)
            try:
                await self.checkpoint()
            except StoreError:
                log.warning("audit_checkpoint_failed")
            except Exception:  # the worker must outlive one bad round
                log.exception("audit_checkpoint_failed")

    async def stop(self) -> None:
        """Stop the worker and sign the final head, so a clean stop leaves no unsigned tail."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await self.checkpoint()
        except Exception:
            log.exception("audit_final_checkpoint_failed")
