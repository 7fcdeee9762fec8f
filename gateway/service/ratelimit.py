"""Rate limits (Art. 7(9)): token buckets per provider and route class, or per client IP.

The bucket state sits behind `RateLimiter`: `MemoryRateLimiter` is exact for one process (the
SQLite deployment); `SharedRateLimiter` keeps the buckets in PostgreSQL so that replicas
share them and a provider gets its limit once, not once per replica.
"""

from __future__ import annotations

import asyncio
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
    costs a float and a timestamp per key instead of a counter. A take is one statement on a
    pooled connection (~one round trip), outside the group commit (see
    `gateway.store.ratelimit`).

    A busy key does not pay that statement per request: one take may spend up to the tokens
    the bucket refills in LEASE_S (at most a tenth of its burst, at most LEASE_MAX), which this
    replica then spends locally for at most LEASE_S; what is left unspent then is dropped.
    Every token spent anywhere was taken from the shared bucket, so replicas together never
    exceed the limit; a replica holds at most a lease's worth that another could have used.
    Buckets too small for a lease of two take one token at a time, as before. One statement
    per key is in flight at a time: concurrent takes of the key wait for its lease (or share
    its refusal) instead of each fetching a lease of its own.
    """

    def __init__(
        self,
        store: Store,
        *,
        sweep_every_s: float = 600.0,
        idle_ms: int = 3_600_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._sweep_every_s = sweep_every_s
        self._idle_ms = idle_ms
        self._clock = clock
        self._swept = clock()
        # key -> (tokens taken from the shared bucket and not yet spent, until when)
        self._leases: dict[str, tuple[int, float]] = {}
        # key -> the take in flight (its result: None if it got tokens, else the wait)
        self._taking: dict[str, asyncio.Future[float | None]] = {}

    async def take(self, key: str, bucket: BucketConfig) -> float:
        while True:
            lease = self._leases.get(key)
            if lease is not None and lease[0] > 0 and lease[1] > self._clock():
                self._leases[key] = (lease[0] - 1, lease[1])
                return 0.0
            pending = self._taking.get(key)
            if pending is None:
                break
            # One statement in flight per key: wait for its lease, or share its refusal.
            shared = await asyncio.shield(pending)
            if shared is not None:
                return shared
        pending = asyncio.get_running_loop().create_future()
        self._taking[key] = pending
        refused: float | None = None
        try:
            taken = await buckets.take_token(
                self._store, key, bucket.burst, bucket.rate_per_s, up_to=lease_size(bucket)
            )
            now = self._clock()
            if taken.granted > 1:
                self._leases[key] = (taken.granted - 1, now + LEASE_S)
            else:
                self._leases.pop(key, None)
            if not taken.allowed:
                refused = (1.0 - taken.tokens) / bucket.rate_per_s
        finally:
            del self._taking[key]
            pending.set_result(refused)
        if now - self._swept >= self._sweep_every_s:
            self._swept = now
            # An idle bucket is full again: forgetting it changes nothing.
            await buckets.forget_idle_buckets(self._store, self._idle_ms)
            self._leases = {k: v for k, v in self._leases.items() if v[1] > now}
        return 0.0 if refused is None else refused


LEASE_S = 0.1
LEASE_MAX = 64


def lease_size(bucket: BucketConfig) -> int:
    """How many tokens one shared take may spend for later local use (see SharedRateLimiter)."""
    return max(1, int(min(LEASE_MAX, bucket.rate_per_s * LEASE_S, bucket.burst / 10)))


def rate_limiter(store: Store) -> RateLimiter:
    """Shared buckets where replicas share the database (PostgreSQL), else this process's."""
    return SharedRateLimiter(store) if buckets.buckets_in_database(store) else MemoryRateLimiter()


def retry_after_s(wait: float) -> int:
    """The Retry-After header value (whole seconds, at least 1) for a wait."""
    return max(1, math.ceil(wait))
