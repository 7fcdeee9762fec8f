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


# One statement: refill by the time elapsed on the database's clock (replicas' clocks may
# differ), spend a token if there is one, and say whether it did. A new bucket starts full.
_REFILLED = "LEAST($2, b.tokens + GREATEST(excluded.at - b.at, 0) * $3 / 1000.0)"
TAKE_SQL = (
    "WITH clock AS (SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS ms) "
    "INSERT INTO rate_buckets AS b (key, tokens, at, allowed) "
    "SELECT $1, $2 - 1, clock.ms, 1 FROM clock "
    "ON CONFLICT (key) DO UPDATE SET "
    f"tokens = {_REFILLED} - CASE WHEN {_REFILLED} >= 1 THEN 1 ELSE 0 END, "
    "at = GREATEST(b.at, excluded.at), "
    f"allowed = CASE WHEN {_REFILLED} >= 1 THEN 1 ELSE 0 END "
    "RETURNING tokens, allowed"
)
SWEEP_SQL = (
    "DELETE FROM rate_buckets "
    "WHERE at < (extract(epoch FROM clock_timestamp()) * 1000)::bigint - $1"
)


class SharedRateLimiter:
    """Token buckets in PostgreSQL (`rate_buckets`), shared by every replica.

    A token bucket rather than a fixed-window counter: the same semantics as one process
    (bursts up to `burst`, then `rate_per_s`), and no double burst at a window's edge; it
    costs a float and a timestamp per key instead of a counter. Each take is one
    INSERT .. ON CONFLICT DO UPDATE on a pooled connection (~one round trip), outside the
    group commit: bucket state needs no durability (the table is UNLOGGED) and would
    otherwise take a place in the single writer's queue on every request. Concurrent takes of
    one key queue on its row lock for microseconds; different keys never meet.
    """

    def __init__(self, store: Store, *, sweep_every_s: float = 600.0, idle_ms: int = 3_600_000):
        self._store = store
        self._sweep_every_s = sweep_every_s
        self._idle_ms = idle_ms
        self._swept = time.monotonic()

    async def take(self, key: str, bucket: BucketConfig) -> float:
        row = await self._store.fetchrow(
            TAKE_SQL, key, float(bucket.burst), float(bucket.rate_per_s)
        )
        assert row is not None
        if time.monotonic() - self._swept >= self._sweep_every_s:
            self._swept = time.monotonic()
            # An idle bucket is full again: forgetting it changes nothing.
            await self._store.fetchval(SWEEP_SQL, self._idle_ms)
        if row["allowed"]:
            return 0.0
        return (1.0 - float(row["tokens"])) / bucket.rate_per_s


def rate_limiter(store: Store) -> RateLimiter:
    """Shared buckets where replicas share the database (PostgreSQL), else this process's."""
    return MemoryRateLimiter() if store.dialect == "sqlite" else SharedRateLimiter(store)


def retry_after_s(wait: float) -> int:
    """The Retry-After header value (whole seconds, at least 1) for a wait."""
    return max(1, math.ceil(wait))
