"""Rate limits (Art. 7(9)): token buckets per provider and route class, or per client IP.

The bucket state sits behind `RateLimiter`: `MemoryRateLimiter` is exact for one process (the
SQLite deployment); `SharedRateLimiter` keeps the buckets in PostgreSQL so that replicas
share them and a provider gets its limit once, not once per replica.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Protocol

from gateway.config import BucketConfig
from gateway.store import Store
from gateway.store import ratelimit as buckets


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


class SharedRateLimiter:
    """Token buckets in PostgreSQL (`rate_buckets`), shared by every replica.

    A token bucket rather than a fixed-window counter: the same semantics as one process
    (bursts up to `burst`, then `rate_per_s`), and no double burst at a window's edge; it
    costs a float and a timestamp per key instead of a counter. Each take is one
    statement on a pooled connection (~one round trip), outside the group commit (see
    `gateway.store.ratelimit`). Concurrent takes of one key queue on its row lock for
    microseconds; different keys never meet.
    """

    def __init__(self, store: Store, *, sweep_every_s: float = 600.0, idle_ms: int = 3_600_000):
        self._store = store
        self._sweep_every_s = sweep_every_s
        self._idle_ms = idle_ms
        self._swept = time.monotonic()

    async def take(self, key: str, bucket: BucketConfig) -> float:
        taken = await buckets.take_token(self._store, key, bucket.burst, bucket.rate_per_s)
        if time.monotonic() - self._swept >= self._sweep_every_s:
            self._swept = time.monotonic()
            # An idle bucket is full again: forgetting it changes nothing.
            await buckets.forget_idle_buckets(self._store, self._idle_ms)
        if taken.allowed:
            return 0.0
        return (1.0 - taken.tokens) / bucket.rate_per_s


def rate_limiter(store: Store) -> RateLimiter:
    """Shared buckets where replicas share the database (PostgreSQL), else this process's."""
    return SharedRateLimiter(store) if buckets.buckets_in_database(store) else MemoryRateLimiter()


def retry_after_s(wait: float) -> int:
    """The Retry-After header value (whole seconds, at least 1) for a wait."""
    return max(1, math.ceil(wait))
