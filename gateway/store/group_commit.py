"""Group commit shared by the backends: one writer task drains queued write units in batches.

Each backend runs a batch as one transaction (a savepoint per unit) and resolves the units'
futures once it is durable; this module owns the queue, the writer task and its lifecycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import structlog

from gateway import metrics
from gateway.store.base import BatchFlush, StoreError, Tx, WriteUnit

log = structlog.get_logger(__name__)

T = TypeVar("T")


class Pending:
    """One queued write unit and the future its caller awaits."""

    __slots__ = ("future", "name", "unit")

    def __init__(self, name: str, unit: WriteUnit[Any], future: asyncio.Future[Any]) -> None:
        self.name = name
        self.unit = unit
        self.future = future


class UnitState:
    """What a backend's Tx keeps of its unit: on-commit callbacks and deferred batch items."""

    __slots__ = ("_callbacks", "_deferred")

    def __init__(self, *, in_write: bool = True) -> None:
        self._callbacks: list[Callable[[], None]] = []
        # None outside a write: a read has no batch to defer to.
        self._deferred: list[tuple[BatchFlush, Any]] | None = [] if in_write else None

    def on_commit(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def defer(self, flush: BatchFlush, item: Any) -> None:
        if self._deferred is None:
            raise StoreError("only a write unit can defer work to its batch")
        self._deferred.append((flush, item))


Outcome = tuple[Pending, Any, BaseException | None, UnitState]


async def flush_deferred(tx: Tx, outcomes: Sequence[Outcome]) -> None:
    """Run each flush once with the deferred items of the batch's units that stand, in unit
    order (Tx.defer)."""
    pending: dict[BatchFlush, list[Any]] = {}
    for _, _, error, unit_tx in outcomes:
        if error is None and unit_tx._deferred:
            for flush, item in unit_tx._deferred:
                pending.setdefault(flush, []).append(item)
    for flush, items in pending.items():
        await flush(tx, items)


def has_deferred(outcomes: Sequence[Outcome]) -> bool:
    """Whether any standing unit of the batch deferred work to it."""
    return any(error is None and tx._deferred for _, _, error, tx in outcomes)


class GroupCommitWriter:
    """The queue and writer task of a Store; subclasses implement `_run_batch`."""

    def __init__(self, group_commit_max: int) -> None:
        self._group_commit_max = group_commit_max
        self._queue: asyncio.Queue[Pending] = asyncio.Queue()
        self._writer_task: asyncio.Task[None] | None = None
        self._closed = False

    def _start_writer(self, name: str) -> None:
        self._writer_task = asyncio.get_running_loop().create_task(self._write_loop(), name=name)

    async def write(self, name: str, unit: WriteUnit[T]) -> T:
        if self._closed or self._writer_task is None:
            raise StoreError("store is closed or read only")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(Pending(name, unit, future))
        return await future

    async def _write_loop(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            while len(batch) < self._group_commit_max and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._run_batch(batch)
            except Exception as exc:  # the loop must outlive any one batch
                await self._batch_failed(batch, exc)
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(StoreError("write failed"))
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _run_batch(self, batch: list[Pending]) -> None:
        raise NotImplementedError

    def _resolve(self, outcomes: Sequence[Outcome], started: float) -> None:
        """After the batch's COMMIT: run on-commit callbacks, answer every unit's caller."""
        metrics.STORE_COMMITS.inc()
        metrics.STORE_BATCH_SIZE.observe(len(outcomes))
        metrics.STORE_COMMIT_DURATION.observe(time.perf_counter() - started)
        for item, result, error, tx in outcomes:
            if error is None:
                for callback in tx._callbacks:
                    try:
                        callback()
                    except Exception:
                        log.exception("store_on_commit_failed", unit=item.name)
            if item.future.done():
                continue
            if error is None:
                item.future.set_result(result)
            else:
                item.future.set_exception(error)

    async def _batch_failed(self, batch: list[Pending], exc: Exception) -> None:
        """Log and reset the writer's connection after a batch failed as a whole."""

    async def _stop_writer(self) -> None:
        """Let queued writes finish, then stop the writer task (first step of `close`)."""
        if self._writer_task is not None and not self._writer_task.done():
            await self._queue.join()
        self._closed = True
        if self._writer_task is not None:
            self._writer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer_task
