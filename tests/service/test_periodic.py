"""wait_event: a worker loop waiting on its wake-up event still gets its cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable

import pytest

from gateway.service.periodic import wait_event

Wait = Callable[[asyncio.Event, float], Awaitable[object]]


async def wait_for_event(event: asyncio.Event, timeout_s: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout_s)


async def cancelled_as_the_event_fires(wait: Wait) -> bool:
    """Cancel a waiting loop in the same turn its event fires: did the loop stop?"""
    event = asyncio.Event()

    async def loop() -> None:
        while True:
            await wait(event, 10)
            event.clear()

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)  # the loop waits
    event.set()
    await asyncio.sleep(0)  # the wait has finished (with wait_for: the loop not resumed yet)
    task.cancel()
    await asyncio.wait([task], timeout=0.5)
    stopped = task.done()
    task.cancel()  # a loop that swallowed the first one
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return stopped


async def test_a_cancellation_as_the_event_fires_stops_the_loop() -> None:
    assert await cancelled_as_the_event_fires(wait_event)


@pytest.mark.skipif(
    sys.version_info >= (3, 12),
    reason="CPython gh-86296 (wait_for swallowing a cancellation) only affects 3.11",
)
async def test_asyncio_wait_for_would_have_missed_it() -> None:
    assert not await cancelled_as_the_event_fires(wait_for_event)


async def test_wait_event_tells_set_from_timeout() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, 10) is True
