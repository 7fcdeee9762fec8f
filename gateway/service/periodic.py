"""A background job run every few seconds, owning its task and logging its own failures."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

log = structlog.get_logger(__name__)


async def wait_event(event: asyncio.Event, timeout_s: float) -> bool:
    """Wait until `event` is set or `timeout_s` passes; True if it was set.

    Not asyncio.wait_for: on Python 3.11 it can swallow a cancellation that arrives as the wait
    ends (CPython gh-86296), and a worker loop that misses its cancellation never stops, so
    shutdown hangs on it. asyncio.timeout tells the two apart.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await event.wait()
    return event.is_set()


class Periodic:
    """Runs `job` now and then every `interval_s` until stopped; a failing run is logged."""

    def __init__(self, job: Callable[[], Awaitable[Any]], interval_s: float, name: str) -> None:
        self.job = job
        self.interval_s = interval_s
        self.name = name
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the task (this object keeps the reference)."""
        self._task = asyncio.get_running_loop().create_task(self._loop(), name=self.name)

    async def stop(self) -> None:
        """Cancel the task and wait for it to end."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self.job()
            except Exception:
                log.exception("periodic_job_failed", job=self.name)
            await asyncio.sleep(self.interval_s)
