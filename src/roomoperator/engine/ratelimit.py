"""The write rate limit: a token bucket shared by every write of a reconcile (or of a whole operator).

Built on aiolimiter's leaky bucket: `rate_per_second` sustained, up to `burst` at once after a pause.
"""

from __future__ import annotations

import math

from aiolimiter import AsyncLimiter


class RateLimiter:
    """`rate_per_second` acquisitions a second on average, up to `burst` (default: one second's) at once."""

    def __init__(self, rate_per_second: float, *, burst: int | None = None) -> None:
        if rate_per_second <= 0:
            raise ValueError("rate_per_second must be positive")
        capacity = burst if burst is not None else max(1, math.ceil(rate_per_second))
        if capacity < 1:
            raise ValueError("burst must be at least 1")
        self.rate_per_second = rate_per_second
        self.burst = capacity
        self._bucket = AsyncLimiter(max_rate=capacity, time_period=capacity / rate_per_second)

    async def acquire(self) -> None:
        """Wait until one more write is allowed."""
        await self._bucket.acquire()
