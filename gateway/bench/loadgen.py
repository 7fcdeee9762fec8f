"""The built-in load generator: N keep-alive connections, fixed duration, latency percentiles.

Used when `wrk` is not on PATH, and for runs that need per-connection ordering (each connection
sends its own conversation in sequence, e.g. fresh Olm ciphertext for the end-to-end run).
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections import Counter
from collections.abc import Callable, Mapping

import aiohttp
import msgspec

# body(connection, seq) -> request body; called just before each request on that connection.
BodySource = Callable[[int, int], bytes]


class LoadResult(msgspec.Struct, kw_only=True):
    """What one load run measured (wrk or the built-in generator)."""

    tool: str
    connections: int
    duration_s: float
    requests: int
    accepted: int
    errors: int
    rps: float
    accepted_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    statuses: dict[str, int] = {}


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-quantile (0..1) of already sorted values, nearest rank; 0 when empty."""
    if not sorted_values:
        return 0.0
    rank = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values)) - 1))
    return sorted_values[rank]


def summarize(
    tool: str, connections: int, elapsed: float, latencies_s: array[float], statuses: Counter[int]
) -> LoadResult:
    """A LoadResult from raw latencies (seconds) and status counts."""
    ordered = sorted(latencies_s)
    requests = len(ordered)
    accepted = sum(n for status, n in statuses.items() if 200 <= status < 300)
    elapsed = max(elapsed, 1e-9)
    return LoadResult(
        tool=tool,
        connections=connections,
        duration_s=round(elapsed, 3),
        requests=requests,
        accepted=accepted,
        errors=requests - accepted,
        rps=round(requests / elapsed, 1),
        accepted_per_s=round(accepted / elapsed, 1),
        p50_ms=round(percentile(ordered, 0.50) * 1000, 3),
        p90_ms=round(percentile(ordered, 0.90) * 1000, 3),
        p99_ms=round(percentile(ordered, 0.99) * 1000, 3),
        max_ms=round((ordered[-1] if ordered else 0.0) * 1000, 3),
        statuses={str(k): v for k, v in sorted(statuses.items())},
    )


async def drive(
    url: str,
    body: BodySource,
    *,
    connections: int,
    duration_s: float | None = None,
    total: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> LoadResult:
    """POST bodies to `url` from `connections` sequential senders until the time or count is up."""
    if duration_s is None and total is None:
        raise ValueError("give duration_s or total")
    latencies: array[float] = array("d")
    statuses: Counter[int] = Counter()
    sent = 0
    send_headers = {"Content-Type": "application/json", **(headers or {})}
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    started = time.perf_counter()
    deadline = started + duration_s if duration_s is not None else float("inf")

    async def sender(session: aiohttp.ClientSession, connection: int) -> None:
        nonlocal sent
        seq = 0
        while time.perf_counter() < deadline and (total is None or sent < total):
            sent += 1
            data = body(connection, seq)
            seq += 1
            t0 = time.perf_counter()
            try:
                async with session.post(url, data=data, headers=send_headers) as response:
                    await response.read()
                    status = response.status
            except aiohttp.ClientError:
                status = 0
            latencies.append(time.perf_counter() - t0)
            statuses[status] += 1

    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(sender(session, c) for c in range(connections)))
    elapsed = time.perf_counter() - started
    return summarize("asyncio", connections, elapsed, latencies, statuses)
