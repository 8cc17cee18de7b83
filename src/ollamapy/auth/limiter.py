"""Slow down a burst of failed key attempts from one address: a token bucket per address.

Each failed attempt takes a token; tokens come back at `rate` per second up to `burst`. An
address with no token left is refused (429 with `Retry-After`) before its key is even looked
at, so guessing gains nothing from the refusal, and a client with a wrong key in a loop
costs the server almost nothing. Successful requests take no token. The clock is injected.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class FailureLimiter:
    """Per-address failure budget: `burst` failures at once, then `rate` per second."""

    def __init__(
        self,
        burst: int = 10,
        rate: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        max_addresses: int = 10_000,
    ) -> None:
        self.burst = float(burst)
        self.rate = rate
        self.clock = clock
        self.max_addresses = max_addresses
        self._buckets: dict[str, _Bucket] = {}

    def retry_after(self, address: str) -> int:
        """Seconds until `address` may try again; 0 when it may try now."""
        bucket = self._refilled(address)
        if bucket is None or bucket.tokens >= 1:
            return 0
        return max(1, math.ceil((1 - bucket.tokens) / self.rate))

    def failed(self, address: str) -> None:
        """Record one failed attempt from `address`."""
        bucket = self._refilled(address)
        if bucket is None:
            self._forget_full()
            bucket = self._buckets[address] = _Bucket(self.burst, self.clock())
        bucket.tokens = max(0.0, bucket.tokens - 1)

    def _refilled(self, address: str) -> _Bucket | None:
        bucket = self._buckets.get(address)
        if bucket is not None:
            now = self.clock()
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
        return bucket

    def _forget_full(self) -> None:
        """Keep memory bounded: drop addresses whose bucket has refilled (or, failing that,
        the oldest), so a flood of addresses cannot grow the table without limit."""
        if len(self._buckets) < self.max_addresses:
            return
        now = self.clock()
        for address, bucket in list(self._buckets.items()):
            if bucket.tokens + (now - bucket.updated) * self.rate >= self.burst:
                del self._buckets[address]
        while len(self._buckets) >= self.max_addresses:
            del self._buckets[next(iter(self._buckets))]
