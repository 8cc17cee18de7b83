"""The scheduler: a set of loaded runners, shared by requests, expired by keep_alive.

It sees runners only through `ManagedRunner` and creates them through an injected
`RunnerFactory`, so its logic is tested with fakes and an injected clock. Requests for a
loaded model never wait for another model's load; requests for a model being loaded wait
for that load; a load-time option change (num_ctx, num_gpu, ...) reloads the runner.

A new load must fit twice over: in the count (`OLLAMA_MAX_LOADED_MODELS`) and in memory
(an injected `Estimator` against an injected `MemoryProbe`). When it does not, idle runners
are unloaded least recently used first, then the load waits for busy ones to go idle; a
model larger than the whole machine fails at once instead of waiting forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from ollamapy.errors import RunnerError, ServiceUnavailableError
from ollamapy.scheduler.memory import (
    UNLIMITED,
    InsufficientMemoryError,
    MemoryEstimate,
    MemorySnapshot,
)
from ollamapy.types.options import RunnerOptions

log = logging.getLogger(__name__)

MAX_LOADED_DEFAULT = 3
AUTO_PARALLEL = (4, 1)
"""`num_parallel` 0 means: 4 sequences when they fit in memory, else 1 (Ollama's default)."""
MEMORY_POLL_S = 1.0
"""A load waiting for memory re-reads it this often (other processes may free some)."""
SHUTTING_DOWN = "server is shutting down"
QUEUE_FULL = "server busy, please try again.  maximum pending requests exceeded"


class ManagedRunner(Protocol):
    """What the scheduler needs of a runner: is it alive, and how to stop it."""

    @property
    def alive(self) -> bool: ...

    async def close(self) -> None: ...


RunnerT = TypeVar("RunnerT", bound=ManagedRunner)


@dataclass(frozen=True, slots=True)
class ModelLoad:
    """Everything that identifies one loaded runner: a change here means a reload."""

    name: str
    model_path: Path
    digest: str
    options: RunnerOptions
    adapters: tuple[Path, ...] = ()
    projectors: tuple[Path, ...] = ()
    num_parallel: int = 1
    size: int = 0
    details: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> Path:
        """Runners are keyed by model file, as Ollama keys them."""
        return self.model_path

    @property
    def parallel_choices(self) -> tuple[int, ...]:
        """The `num_parallel` values to try, best first (0 asks the scheduler to choose)."""
        return AUTO_PARALLEL if self.num_parallel <= 0 else (self.num_parallel,)


RunnerFactory = Callable[[ModelLoad], Awaitable[RunnerT]]
Estimator = Callable[[ModelLoad, int], MemoryEstimate]
"""The memory a load would need with a given `num_parallel` (blocking is fine: it runs in a
worker thread)."""
MemoryProbe = Callable[[], MemorySnapshot]
"""The machine's memory now (blocking is fine: it runs in a worker thread)."""


def no_estimate(load: ModelLoad, num_parallel: int) -> MemoryEstimate:
    """The estimator of a scheduler that was given none: loads cost nothing."""
    return MemoryEstimate()


@dataclass(frozen=True, slots=True)
class Placement:
    """The outcome of making room: the load as it will start, and what it will hold."""

    load: ModelLoad
    memory: MemoryEstimate
    size_vram: int


@dataclass(eq=False)
class LoadedModel(Generic[RunnerT]):
    """A loaded runner and its bookkeeping.

    `load` is what was started (with `num_parallel` chosen); `requested` is the load that
    asked for it, which later requests are matched against.
    """

    load: ModelLoad
    runner: RunnerT
    loaded_at: float
    keep_alive: float
    active: int = 0
    last_used: float = 0.0
    expires_at: float = math.inf
    memory: MemoryEstimate = field(default_factory=MemoryEstimate)
    size_vram: int = 0
    requested: ModelLoad | None = None

    def serves(self, load: ModelLoad) -> bool:
        """Whether a request for `load` can use this runner without a reload."""
        return (self.requested or self.load) == load

    @property
    def idle(self) -> bool:
        return self.active == 0


class Scheduler(Generic[RunnerT]):
    """Loads runners on demand and hands them to requests through `use()`."""

    def __init__(
        self,
        factory: Callable[[ModelLoad], Awaitable[RunnerT]],
        *,
        default_keep_alive: float,
        max_loaded: int = 0,
        max_queue: int = 512,
        clock: Callable[[], float] = time.monotonic,
        estimator: Estimator = no_estimate,
        memory: MemoryProbe | None = None,
    ) -> None:
        self._factory = factory
        self._default_keep_alive = default_keep_alive
        self._max_loaded = max_loaded or MAX_LOADED_DEFAULT
        self._max_queue = max_queue
        self._clock = clock
        self._estimator = estimator
        self._memory = memory
        self._loaded: dict[Path, LoadedModel[RunnerT]] = {}
        self._loading: dict[Path, asyncio.Future[LoadedModel[RunnerT]]] = {}
        self._reserved: dict[Path, MemoryEstimate] = {}
        """Loads past the fit check whose runner is still starting: counted as loaded."""
        self._pending = 0
        self._changed = asyncio.Event()
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False

    # -- requests -------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def use(
        self, load: ModelLoad, keep_alive: float | None = None
    ) -> AsyncIterator[LoadedModel[RunnerT]]:
        """Hold a loaded runner for one request; afterwards start its keep_alive timer."""
        if self._closed:
            raise ServiceUnavailableError(SHUTTING_DOWN)
        if self._pending >= self._max_queue:
            raise ServiceUnavailableError(QUEUE_FULL)
        self._pending += 1
        try:
            entry = await self._acquire(load)
        finally:
            self._pending -= 1
        entry.active += 1
        try:
            yield entry
        finally:
            entry.active -= 1
            self._release(entry, keep_alive)

    async def load(self, load: ModelLoad, keep_alive: float | None = None) -> LoadedModel[RunnerT]:
        """Load (or refresh) a model without running a request on it."""
        async with self.use(load, keep_alive) as entry:
            return entry

    async def unload(self, model_path: Path) -> bool:
        """Unload a model now if loaded (after its running requests finish)."""
        entry = self._loaded.get(model_path)
        if entry is None:
            return False
        if entry.idle:
            await self._stop(entry)
        else:
            entry.keep_alive = 0.0
        return True

    def loaded(self) -> list[LoadedModel[RunnerT]]:
        """Loaded models, most recently used first (for /api/ps)."""
        self._drop_dead()
        return sorted(self._loaded.values(), key=lambda e: e.last_used, reverse=True)

    def wall_clock_expiry(self, entry: LoadedModel[RunnerT]) -> float:
        """`expires_at` as a Unix timestamp (inf for forever)."""
        if math.isinf(entry.expires_at) or entry.active:
            return math.inf if math.isinf(entry.keep_alive) else time.time() + entry.keep_alive
        return time.time() + (entry.expires_at - self._clock())

    async def shutdown(self) -> None:
        """Stop every runner; a load still starting is stopped as soon as it finishes."""
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
        for entry in list(self._loaded.values()):
            await self._stop(entry)

    # -- keep_alive -------------------------------------------------------------------------

    async def sweep(self) -> None:
        """Unload every idle runner whose keep_alive has run out (or whose process died)."""
        self._drop_dead()
        now = self._clock()
        for entry in list(self._loaded.values()):
            if entry.idle and entry.expires_at <= now:
                await self._stop(entry)

    def _release(self, entry: LoadedModel[RunnerT], keep_alive: float | None) -> None:
        if keep_alive is not None:
            entry.keep_alive = keep_alive
        entry.last_used = self._clock()
        entry.expires_at = entry.last_used + entry.keep_alive
        if entry.idle and entry.keep_alive <= 0:
            task = asyncio.get_running_loop().create_task(self._stop(entry))
            task.add_done_callback(_log_failure)
        self._ensure_reaper()
        self._changed.set()

    def _ensure_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(self._reap_forever())

    async def _reap_forever(self) -> None:
        while self._loaded:
            soonest = min((e.expires_at for e in self._loaded.values()), default=math.inf)
            delay = min(max(soonest - self._clock(), 0.05), 1.0)
            await asyncio.sleep(delay)
            await self.sweep()

    # -- loading ----------------------------------------------------------------------------

    async def _acquire(self, load: ModelLoad) -> LoadedModel[RunnerT]:
        while True:
            self._drop_dead()
            entry = self._loaded.get(load.key)
            if entry is not None and entry.serves(load):
                entry.last_used = self._clock()
                return entry
            pending = self._loading.get(load.key)
            if pending is not None:
                await asyncio.shield(pending)
                continue
            if entry is not None and not entry.idle:
                await self._wait_for_change()
                continue
            if entry is not None:
                await self._stop(entry)
            return await self._start(load)

    async def _start(self, load: ModelLoad) -> LoadedModel[RunnerT]:
        future: asyncio.Future[LoadedModel[RunnerT]] = asyncio.get_running_loop().create_future()
        self._loading[load.key] = future
        try:
            placement = await self._make_room(load)
            started = self._clock()
            runner = await self._factory(placement.load)
            if self._closed:  # shut down while loading: leave no process behind
                await runner.close()
                raise ServiceUnavailableError(SHUTTING_DOWN)
            entry = LoadedModel(placement.load, runner, started, self._default_keep_alive)
            entry.memory, entry.size_vram, entry.requested = (
                placement.memory,
                placement.size_vram,
                load,
            )
            entry.last_used = self._clock()
            self._loaded[load.key] = entry
            future.set_result(entry)
            return entry
        except BaseException as exc:
            future.set_exception(exc if isinstance(exc, Exception) else RunnerError("cancelled"))
            future.exception()  # mark retrieved; requests waiting on this load get the error too
            raise
        finally:
            del self._loading[load.key]
            self._reserved.pop(load.key, None)
            self._changed.set()

    async def _make_room(self, load: ModelLoad) -> Placement:
        """Evict least recently used idle runners until `load` fits; reserve its memory.

        Fails at once when the smallest choice exceeds the machine's total memory, or when
        nothing is left to unload or wait for and it still does not fit.
        """
        choices = await asyncio.to_thread(self._estimates, load)
        smallest = choices[-1][1]
        while True:
            snapshot = await self._snapshot()
            if smallest.total > snapshot.total:
                raise InsufficientMemoryError(smallest.total, snapshot.total)
            placement = self._place(load, choices, snapshot)
            if placement is not None:
                self._reserved[load.key] = placement.memory
                return placement
            idle = [e for e in self._loaded.values() if e.idle]
            if idle:
                await self._stop(min(idle, key=lambda e: e.last_used))
            elif self._loaded or self._reserved:
                await self._wait_for_change(MEMORY_POLL_S)
            else:
                raise InsufficientMemoryError(smallest.total, self._budget(snapshot))

    def _estimates(self, load: ModelLoad) -> list[tuple[int, MemoryEstimate]]:
        return [(n, self._estimator(load, n)) for n in load.parallel_choices]

    def _place(
        self, load: ModelLoad, choices: list[tuple[int, MemoryEstimate]], snapshot: MemorySnapshot
    ) -> Placement | None:
        """The best choice that fits now, in both count and memory; None if none does."""
        if len(self._loaded) + len(self._reserved) >= self._max_loaded:
            return None
        budget = self._budget(snapshot)
        for parallel, memory in choices:
            if memory.total <= budget:
                vram = min(memory.total, snapshot.vram_available)
                if load.options.num_gpu == 0:
                    vram = 0
                return Placement(replace(load, num_parallel=parallel), memory, vram)
        return None

    def _budget(self, snapshot: MemorySnapshot) -> int:
        """Memory a new load may take: what is free, but never more than the machine minus
        what our runners are expected to hold (mapped weights look free to the kernel)."""
        held = sum(e.memory.total for e in self._loaded.values())
        held += sum(m.total for m in self._reserved.values())
        return max(0, min(snapshot.available, snapshot.total - held))

    async def _snapshot(self) -> MemorySnapshot:
        if self._memory is None:
            return UNLIMITED
        return await asyncio.to_thread(self._memory)

    async def _wait_for_change(self, timeout: float | None = None) -> None:
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    async def _stop(self, entry: LoadedModel[RunnerT]) -> None:
        if self._loaded.get(entry.load.key) is entry:
            del self._loaded[entry.load.key]
        log.info("unloading %s", entry.load.name)
        try:
            await entry.runner.close()
        finally:
            self._changed.set()

    def _drop_dead(self) -> None:
        """Forget runners whose process exited; closing them reaps the process and its client."""
        for key, entry in list(self._loaded.items()):
            if not entry.runner.alive:
                log.warning("runner for %s exited; it will be restarted on demand", entry.load.name)
                del self._loaded[key]
                self._changed.set()
                with contextlib.suppress(RuntimeError):  # no loop: nothing to reap with
                    task = asyncio.get_running_loop().create_task(entry.runner.close())
                    task.add_done_callback(_log_failure)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("unloading failed: %s", task.exception())
