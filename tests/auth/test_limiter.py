"""Failed attempts from one address: a burst is allowed, then one per 1/rate seconds."""

from __future__ import annotations

from ollamapy.auth import FailureLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_is_allowed_then_the_address_waits() -> None:
    clock = Clock()
    limiter = FailureLimiter(burst=3, rate=0.5, clock=clock)
    for _ in range(2):
        limiter.failed("1.2.3.4")
        assert limiter.retry_after("1.2.3.4") == 0
    limiter.failed("1.2.3.4")
    assert limiter.retry_after("1.2.3.4") == 2  # one token back after 1/rate seconds
    clock.now = 1.0
    assert limiter.retry_after("1.2.3.4") == 1
    clock.now = 2.0
    assert limiter.retry_after("1.2.3.4") == 0


def test_addresses_are_counted_apart() -> None:
    limiter = FailureLimiter(burst=1, rate=1.0, clock=Clock())
    limiter.failed("a")
    assert limiter.retry_after("a") == 1
    assert limiter.retry_after("b") == 0


def test_an_address_never_seen_may_try() -> None:
    assert FailureLimiter().retry_after("9.9.9.9") == 0


def test_the_table_of_addresses_stays_bounded() -> None:
    clock = Clock()
    limiter = FailureLimiter(burst=2, rate=1.0, clock=clock, max_addresses=100)
    for i in range(1000):
        limiter.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter._buckets) <= 100
