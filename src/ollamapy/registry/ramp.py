"""How many parts of a blob download at once, and when the next one may start.

One in-order stream is hashed from memory as it lands (see `hashing`); a part fetched
beside it is read back from the file once the hashed prefix reaches it, and until then
it only takes CPU and bandwidth from the stream the hasher is waiting on. So parts
start one at a time, and connections are added only while the hasher is starved: a
slow or distant registry, where each connection is limited on its own and parallel
parts are what make a pull fast.

Between two parts the registry needs a moment to answer the next request (2-10 ms for
the Debian docker-registry on loopback; a round trip or more over a network), so a part
near its end hands its turn on (`Turn.hand_on`) and the next request overlaps its tail.
Only the request: while one turn is allowed, the next part reads no body until the part
before has ended (`Turn.in_order`), so its bytes arrive in order and are hashed from
memory rather than read back from the file (the registry's answer waits in the socket).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

RAMP_INTERVAL = 0.2
"""Seconds between looks at the hasher."""
RAMP_IDLE = 0.8
"""The share of an interval the hasher must have waited for data to add connections.
Data arriving at a fifth of the hash speed or less: a network limit. Lower, and a busy
CPU (which slows the receiving as much as the hashing) starts to look like one."""


class Turn:
    """One part's permission to download; `hand_on` lets the next part start early."""

    def __init__(self, ramp: ConnectionRamp, before: Turn | None) -> None:
        self._ramp = ramp
        self._before = before
        self.handed_on = False
        self.ended = asyncio.Event()

    def hand_on(self) -> None:
        """The part is nearly done: let the next one send its request (the connection
        stays counted against `maximum` until this part's stream ends)."""
        if not self.handed_on:
            self.handed_on = True
            self._ramp.handing_on = self
            self._ramp.turns.release()

    async def in_order(self) -> None:
        """Wait until the part that handed its turn on to this one has ended, unless the
        ramp has grown (then parts run side by side on purpose)."""
        if self._before is not None and self._ramp.allowed == 1:
            await self._before.ended.wait()
        self._before = None


class ConnectionRamp:
    """`initial` turns at first, doubled (up to `maximum`) after each `RAMP_INTERVAL` in
    which the hasher waited for data for more than `RAMP_IDLE` of the time. Open
    connections never exceed `maximum`, handed-on tails included."""

    def __init__(self, initial: int, maximum: int) -> None:
        self.maximum = max(1, maximum)
        self.allowed = max(1, min(initial, self.maximum))
        self.turns = asyncio.Semaphore(self.allowed)
        self._connections = asyncio.Semaphore(self.maximum)
        self.handing_on: Turn | None = None
        """The last turn that handed on, until the next turn starts after it."""

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[Turn]:
        """Wait for a turn, then for a connection under `maximum`; both end on exit."""
        await self.turns.acquire()
        turn = Turn(self, self.handing_on)
        self.handing_on = None
        try:
            async with self._connections:
                yield turn
        finally:
            turn.ended.set()
            if not turn.handed_on:
                self.turns.release()

    def grow(self, idle_fraction: float) -> None:
        if idle_fraction <= RAMP_IDLE or self.allowed >= self.maximum:
            return
        extra = min(self.allowed, self.maximum - self.allowed)
        for _ in range(extra):
            self.turns.release()
        self.allowed += extra

    async def follow(self, idle_seconds: Callable[[], float], interval: float) -> None:
        """Grow while `idle_seconds()` (the hasher's waiting, so far) says it is starved."""
        while self.allowed < self.maximum:
            idle, started = idle_seconds(), time.monotonic()
            await asyncio.sleep(interval)
            elapsed = time.monotonic() - started
            self.grow((idle_seconds() - idle) / elapsed if elapsed > 0 else 0.0)
