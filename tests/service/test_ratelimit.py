"""Token buckets of the in-memory rate limiter."""

from __future__ import annotations

from gateway.config import BucketConfig
from gateway.service.ratelimit import MemoryRateLimiter, retry_after_s


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_burst_then_refill_at_the_rate() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(clock=clock)
    bucket = BucketConfig(rate_per_s=2.0, burst=3)
    assert [await limiter.take("a", bucket) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = await limiter.take("a", bucket)
    assert wait == 0.5 and retry_after_s(wait) == 1
    assert await limiter.take("b", bucket) == 0.0  # its own bucket
    clock.now += 0.5
    assert await limiter.take("a", bucket) == 0.0
    assert await limiter.take("a", bucket) > 0
    clock.now += 100
    assert [await limiter.take("a", bucket) for _ in range(4)][-1] > 0  # capped at the burst


async def test_idle_buckets_are_forgotten_when_full() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(max_buckets=2, clock=clock)
    bucket = BucketConfig(rate_per_s=1.0, burst=1)
    await limiter.take("a", bucket)
    await limiter.take("b", bucket)
    clock.now += 5
    assert await limiter.take("c", bucket) == 0.0
    assert set(limiter._buckets) == {"c"}
