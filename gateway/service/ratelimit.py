"""Rate limits (Art. 7(9)): token buckets per provider and route class, or per client IP.

The bucket state sits behind `RateLimiter`, so a shared implementation (in the database, for
several replicas) can replace `MemoryRateLimiter`, which is exact for one process.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Protocol

from gateway.config import BucketConfig


class RateLimiter(Protocol):
    """Where bucket state lives."""

    async def take(self, key: str, bucket: BucketConfig) -> float:
        """Spend one token of bucket `key`: 0.0 when allowed, else seconds until one is free."""
        ...


class MemoryRateLimiter:
    """Token buckets in this process's memory, refilled lazily on each take."""

    def __init__(self, *, max_buckets: int = 100_000, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._max = max_buckets
        # key -> (tokens left, time of that count)
        self._buckets: dict[str, tuple[float, float]] = {}

    async def take(self, key: str, bucket: BucketConfig) -> float:
        now = self._clock()
        tokens, at = self._buckets.get(key, (float(bucket.burst), now))
        tokens = min(float(bucket.burst), tokens + (now - at) * bucket.rate_per_s)
        if tokens >= 1.0:
            if len(self._buckets) >= self._max and key not in self._buckets:
                self._forget_full(now, bucket)
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / bucket.rate_per_s

    def _forget_full(self, now: float, bucket: BucketConfig) -> None:
        # A bucket idle long enough to be full again holds no state worth keeping.
        idle = bucket.burst / bucket.rate_per_s
        for key in [k for k, (_, at) in self._buckets.items() if now - at >= idle]:
            del self._buckets[key]
        if len(self._buckets) >= self._max:
            self._buckets.clear()


def retry_after_s(wait: float) -> int:
    """The Retry-After header value (whole seconds, at least 1) for a wait."""
    return max(1, math.ceil(wait))
