"""What the bench reads from a running gateway: message counters from /metrics, settling."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import msgspec


class Counts(msgspec.Struct, frozen=True):
    """Messages to platform users: accepted, delivered, given up on (from /metrics)."""

    accepted: float
    delivered: float
    failed: float

    @property
    def finished(self) -> float:
        return self.delivered + self.failed


def metric_sum(text: str, name: str, label: str = "") -> float:
    """The sum of the samples of `name` whose labels contain `label`."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in "{ ") and label in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def counts(session: aiohttp.ClientSession, base_url: str) -> Counts:
    """The gateway's message counters, direction to_platform."""
    async with session.get(f"{base_url}/metrics") as response:
        text = await response.text()
    label = 'direction="to_platform"'
    return Counts(
        accepted=metric_sum(text, "gateway_messages_accepted_total", label),
        delivered=metric_sum(text, "gateway_messages_delivered_total", label),
        failed=metric_sum(text, "gateway_messages_failed_total", label),
    )


async def settle(
    session: aiohttp.ClientSession, base_url: str, *, timeout_s: float = 300.0
) -> tuple[Counts, float]:
    """Wait until every accepted message is delivered or given up on (the outbox is empty),
    so the next round starts on an idle core; the counts then and when that happened."""
    deadline = time.monotonic() + timeout_s
    while True:
        now = await counts(session, base_url)
        at = time.perf_counter()
        if now.finished >= now.accepted or time.monotonic() > deadline:
            return now, at
        await asyncio.sleep(0.05)
