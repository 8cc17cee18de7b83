"""The scheduler: a set of loaded runners, shared by requests, expired by keep_alive.

It sees runners only through `ManagedRunner` and creates them through an injected
`RunnerFactory`, so its logic is tested with fakes and an injected clock. Requests for a
loaded model never wait for another model's load; requests for a model being loaded wait
for that load; a load-time option change (num_ctx, num_gpu, ...) reloads the runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from ollamapy.errors import RunnerError, ServiceUnavailableError
from ollamapy.types.options import RunnerOptions

log = logging.getLogger(__name__)

MAX_LOADED_DEFAULT = 3
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


RunnerFactory = Callable[[ModelLoad], Awaitable[RunnerT]]


@dataclass(eq=False)
class LoadedModel(Generic[RunnerT]):
    """A loaded runner and its bookkeeping."""

    load: ModelLoad
    runner: RunnerT
    loaded_at: float
    keep_alive: float
    active: int = 0
    last_used: float = 0.0
    expires_at: float = math.inf

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
    ) -> None:
        self._factory = factory
        self._default_keep_alive = default_keep_alive
        self._max_loaded = max_loaded or MAX_LOADED_DEFAULT
        self._max_queue = max_queue
        self._clock = clock
        self._loaded: dict[Path, LoadedModel[RunnerT]] = {}
        self._loading: dict[Path, asyncio.Future[LoadedModel[RunnerT]]] = {}
        self._pending = 0
        self._changed = asyncio.Event()
        self._reaper: asyncio.Task[None] | None = None

    # -- requests -------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def use(
        self, load: ModelLoad, keep_alive: float | None = None
    ) -> AsyncIterator[LoadedModel[RunnerT]]:
        """Hold a loaded runner for one request; afterwards start its keep_alive timer."""
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
            if entry is not None and entry.load == load:
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
            await self._make_room()
            started = self._clock()
            runner = await self._factory(load)
            entry = LoadedModel(load, runner, started, self._default_keep_alive)
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
            self._changed.set()

    async def _make_room(self) -> None:
        """Evict least recently used idle runners until one more may load."""
        while len(self._loaded) + len(self._loading) > self._max_loaded:
            idle = [e for e in self._loaded.values() if e.idle]
            if not idle:
                await self._wait_for_change()
                continue
            await self._stop(min(idle, key=lambda e: e.last_used))

    async def _wait_for_change(self) -> None:
        self._changed.clear()
        await self._changed.wait()

    async def _stop(self, entry: LoadedModel[RunnerT]) -> None:
        if self._loaded.get(entry.load.key) is entry:
            del self._loaded[entry.load.key]
        log.info("unloading %s", entry.load.name)
        try:
            await entry.runner.close()
        finally:
            self._changed.set()

    def _drop_dead(self) -> None:
        for key, entry in list(self._loaded.items()):
            if not entry.runner.alive:
                log.warning("runner for %s exited; it will be restarted on demand", entry.load.name)
                del self._loaded[key]


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("unloading failed: %s", task.exception())
