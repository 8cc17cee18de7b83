"""The scheduler: a set of loaded runners, shared by requests, expired by keep_alive.

It sees runners only through `ManagedRunner` and creates them through an injected
`RunnerFactory`, so its logic is tested with fakes and an injected clock. Requests for a
loaded model never wait for another model's load; requests for a model being loaded wait
for that load; a load-time option change (num_ctx, num_gpu, ...) reloads the runner.

One model file has at most one runner, loaded or starting, at any time (runners are keyed
by model path, as Ollama keys them): two runners of one file would hold its weights and a
KV cache twice for no gain, and the memory fit would have to plan for both. So requests
for one file that want different load options take turns: a request that needs a reload
waits for the runner to go idle (requests that the runner could serve queue behind it
meanwhile, so it is not starved), then starts its load, which unloads the old runner
first (unless the new one could never fit: then the old one stays); requests that want
the same new options share that one load and are all granted its runner at once.

Every runner is owned: a starting one by its load task (listed by `starting()`; cancelled
once every request waiting for it has gone, and a factory leaves no process behind when
it fails or is cancelled), a started one by `_loaded` until its process has exited. A
runner being stopped stays listed by `loaded()` (and counted against memory) until
`close()` returns.

A new load must fit twice over: in the count (`OLLAMA_MAX_LOADED_MODELS`) and in memory
(an injected `Estimator` against an injected `MemoryProbe`). When it does not, idle runners
are unloaded least recently used first, then the load waits for busy ones to go idle; a
model larger than the whole machine fails at once instead of waiting forever.

Given `cores` and a `set_threads` callback, the scheduler also shares the CPU cores between
the runners that are busy at once (`scheduler.cores`): a request's runner gets its share
before the request runs, and the others' shares change as requests start and end.
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

from ollamapy.errors import ServiceUnavailableError
from ollamapy.scheduler import cores as core_share
from ollamapy.scheduler.gpu import plan_offload
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
"""Starts a runner and returns it once its model is loaded. A factory that fails or is
cancelled must leave no process behind (`llm.start_runner` closes its process)."""
Estimator = Callable[[ModelLoad, int], MemoryEstimate]
"""The memory a load would need with a given `num_parallel` (blocking is fine: it runs in a
worker thread)."""
MemoryProbe = Callable[[], MemorySnapshot]
"""The machine's memory now (blocking is fine: it runs in a worker thread)."""
SetThreads = Callable[[RunnerT, int], Awaitable[None]]
"""A runner's way to change its decode thread count (`Runner.set_threads`)."""
SET_THREADS_TIMEOUT_S = 2.0


def no_estimate(load: ModelLoad, num_parallel: int) -> MemoryEstimate:
    """The estimator of a scheduler that was given none: loads cost nothing."""
    return MemoryEstimate()


@dataclass(frozen=True, slots=True)
class Placement:
    """The outcome of making room: the load as it will start, and what it will hold."""

    load: ModelLoad
    memory: MemoryEstimate
    size_vram: int


def _on_devices(load: ModelLoad, memory: MemoryEstimate, snapshot: MemorySnapshot) -> Placement:
    """Split a load between GPUs and CPU. `num_gpu` unset (-1): as many layers as fit in
    the GPUs' free memory (`gpu.plan_offload`), and the runner is told that count; an
    explicit `num_gpu` is the user's choice (0: CPU only)."""
    if load.options.num_gpu == 0 or not snapshot.gpus:
        return Placement(load, memory, 0)
    if load.options.num_gpu > 0 or memory.layers <= 0:
        return Placement(load, memory, min(memory.total, snapshot.vram_available))
    offload = plan_offload(memory, snapshot.gpus)
    options = replace(load.options, num_gpu=offload.layers)
    return Placement(replace(load, options=options), memory, offload.vram)


@dataclass(eq=False)
class LoadedModel(Generic[RunnerT]):
    """A loaded runner and its bookkeeping.

    `load` is what was started (with `num_parallel` chosen); `requested` is the load that
    asked for it, which later requests are matched against. `waiting_for_reload` counts the
    requests that want this file with other options: while any waits, the runner takes no
    new requests, so that it goes idle and they get their turn.
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
    waiting_for_reload: int = 0
    stopping: asyncio.Task[None] | None = field(default=None, repr=False)
    threads: int = 0
    """The decode thread count last given to the runner (0: as it was started)."""

    def serves(self, load: ModelLoad) -> bool:
        """Whether a request for `load` can use this runner without a reload."""
        return (self.requested or self.load) == load

    @property
    def idle(self) -> bool:
        return self.active == 0


@dataclass(eq=False)
class _Loading(Generic[RunnerT]):
    """A runner starting for `load`, and how many requests are waiting for it.

    When the load succeeds, every request still waiting is granted the runner at once (its
    `active` count is set to theirs), so no other request can unload it in between.
    """

    load: ModelLoad
    task: asyncio.Task[LoadedModel[RunnerT]] = field(init=False)
    waiters: int = 0
    abandoned: bool = False


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
        cores: int = 0,
        set_threads: SetThreads[RunnerT] | None = None,
    ) -> None:
        self._factory = factory
        self._default_keep_alive = default_keep_alive
        self._max_loaded = max_loaded or MAX_LOADED_DEFAULT
        self._max_queue = max_queue
        self._clock = clock
        self._estimator = estimator
        self._memory = memory
        self._loaded: dict[Path, LoadedModel[RunnerT]] = {}
        self._loading: dict[Path, _Loading[RunnerT]] = {}
        self._reserved: dict[Path, MemoryEstimate] = {}
        """Loads past the fit check whose runner is still starting: counted as loaded."""
        self._pending = 0
        self._changed = asyncio.Event()
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False
        self._cores = cores if set_threads is not None else 0
        """Cores shared between busy runners; 0: runners keep the threads they started with."""
        self._set_threads = set_threads
        self._sharing = asyncio.Lock()
        self._share_tasks: set[asyncio.Task[None]] = set()

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
            entry = await self._acquire(load, keep_alive)
        finally:
            self._pending -= 1
        try:
            await self._share_cores()
            yield entry
        finally:
            entry.active -= 1
            self._release(entry, keep_alive)
            self._share_cores_soon()

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
        """Loaded models, most recently used first (for /api/ps); a runner being stopped is
        listed until its process has exited."""
        self._drop_dead()
        return sorted(self._loaded.values(), key=lambda e: e.last_used, reverse=True)

    def starting(self) -> list[ModelLoad]:
        """Loads whose runner is still starting (not yet listed by `loaded()`)."""
        return [loading.load for loading in self._loading.values()]

    def wall_clock_expiry(self, entry: LoadedModel[RunnerT]) -> float:
        """`expires_at` as a Unix timestamp (inf for forever)."""
        if math.isinf(entry.expires_at) or entry.active:
            return math.inf if math.isinf(entry.keep_alive) else time.time() + entry.keep_alive
        return time.time() + (entry.expires_at - self._clock())

    async def shutdown(self) -> None:
        """Stop every runner: loads still starting are cancelled (or stopped as soon as a
        factory that ignores cancellation returns), loaded runners are closed."""
        self._closed = True
        self._changed.set()
        if self._reaper is not None:
            self._reaper.cancel()
        for task in list(self._share_tasks):
            task.cancel()
        starting = list(self._loading.values())
        for loading in starting:
            self._abandon(loading)
        await asyncio.gather(*(loading.task for loading in starting), return_exceptions=True)
        stops = [self._stop(entry) for entry in list(self._loaded.values())]
        await asyncio.gather(*stops, return_exceptions=True)

    # -- sharing the cores -----------------------------------------------------------------

    async def _share_cores(self) -> None:
        """Give every busy runner its share of the cores; runners losing threads first, so
        the busy runners' threads never add up to more than the cores meanwhile.

        A runner that fails to answer keeps its count (it is dying or stuck: its requests
        fail on their own); the next change tries again.
        """
        if not self._cores or self._set_threads is None:
            return
        async with self._sharing:
            busy = [
                (entry, entry.load.options.num_thread)
                for entry in self._loaded.values()
                if entry.active and entry.stopping is None and entry.runner.alive
            ]
            plan = core_share.shares(self._cores, busy)
            for entry in plan:
                if not entry.threads:
                    entry.threads = core_share.launched_threads(
                        self._cores, entry.load.options.num_thread
                    )
            changes = sorted(
                ((entry, n) for entry, n in plan.items() if n != entry.threads),
                key=lambda change: change[1] - change[0].threads,
            )
            for entry, n in changes:
                try:
                    await asyncio.wait_for(
                        self._set_threads(entry.runner, n), SET_THREADS_TIMEOUT_S
                    )
                except Exception as exc:  # any failure leaves the count as it was
                    log.warning("could not set %s's threads to %d: %s", entry.load.name, n, exc)
                    continue
                entry.threads = n

    def _share_cores_soon(self) -> None:
        """Re-share the cores after a request ended, without holding up its caller."""
        if not self._cores or self._closed:
            return
        with contextlib.suppress(RuntimeError):  # no running loop: nothing to share
            task = asyncio.get_running_loop().create_task(self._share_cores())
            self._share_tasks.add(task)
            task.add_done_callback(self._share_tasks.discard)

    # -- keep_alive -------------------------------------------------------------------------

    async def sweep(self) -> None:
        """Unload every idle runner whose keep_alive has run out (or whose process died)."""
        self._drop_dead()
        now = self._clock()
        for entry in list(self._loaded.values()):
            if entry.idle and entry.stopping is None and entry.expires_at <= now:
                await self._stop(entry)

    def _release(self, entry: LoadedModel[RunnerT], keep_alive: float | None) -> None:
        if keep_alive is not None:
            entry.keep_alive = keep_alive
        entry.last_used = self._clock()
        entry.expires_at = entry.last_used + entry.keep_alive
        if entry.idle and entry.keep_alive <= 0:
            self._stop_task(entry)
        self._ensure_reaper()
        self._changed.set()

    def _ensure_reaper(self) -> None:
        if self._closed:
            return
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(self._reap_forever())

    async def _reap_forever(self) -> None:
        while self._loaded:
            soonest = min((e.expires_at for e in self._loaded.values()), default=math.inf)
            delay = min(max(soonest - self._clock(), 0.05), 1.0)
            await asyncio.sleep(delay)
            await self.sweep()

    # -- acquiring --------------------------------------------------------------------------

    async def _acquire(self, load: ModelLoad, keep_alive: float | None) -> LoadedModel[RunnerT]:
        """A runner serving `load`, already counted active for the caller.

        Each turn of the loop decides on the current state with no await in between, so two
        requests never both start a load or both stop a runner.
        """
        while True:
            if self._closed:
                raise ServiceUnavailableError(SHUTTING_DOWN)
            self._drop_dead()
            loading = self._loading.get(load.key)
            if loading is not None and not loading.task.done():
                granted = await self._await_load(loading, load, keep_alive)
                if granted is not None:
                    return granted
                continue
            entry = self._loaded.get(load.key)
            if entry is None:
                self._begin_load(load)
            elif entry.stopping is not None:
                await self._wait_for_change()
            elif entry.serves(load):
                if entry.waiting_for_reload == 0:
                    return self._grant(entry)
                await self._wait_for_change()  # queue behind the reload that waits
            elif entry.idle:
                self._begin_load(load, replacing=entry)
            else:
                await self._wait_for_reload(entry)

    def _grant(self, entry: LoadedModel[RunnerT]) -> LoadedModel[RunnerT]:
        entry.active += 1
        entry.last_used = self._clock()
        return entry

    async def _wait_for_reload(self, entry: LoadedModel[RunnerT]) -> None:
        """Wait, as a request for other options, for `entry` to change; meanwhile it takes
        no new requests."""
        entry.waiting_for_reload += 1
        try:
            await self._wait_for_change()
        finally:
            entry.waiting_for_reload -= 1
            if entry.waiting_for_reload == 0:  # requests queued behind it look again
                self._changed.set()

    async def _await_load(
        self, loading: _Loading[RunnerT], load: ModelLoad, keep_alive: float | None
    ) -> LoadedModel[RunnerT] | None:
        """Wait for a load to finish: its runner when it was started for `load` and
        succeeded; None to look again (it was for other options, or it was cancelled)."""
        if loading.load != load or loading.abandoned:
            await asyncio.wait([loading.task])
            return None
        loading.waiters += 1
        try:
            await asyncio.wait([loading.task])
        except asyncio.CancelledError:
            self._leave_load(loading, keep_alive)
            raise
        loading.waiters -= 1
        if loading.task.cancelled():
            return None
        return loading.task.result()  # raises the load's error for every waiter

    def _leave_load(self, loading: _Loading[RunnerT], keep_alive: float | None) -> None:
        """A waiting request has gone: give back its grant, or cancel a load nobody wants."""
        loading.waiters -= 1
        task = loading.task
        if task.done():
            if not task.cancelled() and task.exception() is None:
                entry = task.result()  # granted just before the cancellation arrived
                entry.active -= 1
                self._release(entry, keep_alive)
        elif loading.waiters == 0:
            log.info("cancelling the load of %s: no request waits for it", loading.load.name)
            self._abandon(loading)

    def _abandon(self, loading: _Loading[RunnerT]) -> None:
        """Cancel a load, once: a second cancellation could interrupt the factory while it
        closes the process it spawned."""
        if not loading.abandoned:
            loading.abandoned = True
            loading.task.cancel()

    # -- loading ----------------------------------------------------------------------------

    def _begin_load(self, load: ModelLoad, replacing: LoadedModel[RunnerT] | None = None) -> None:
        """Start loading `load` (after stopping `replacing`, this file's idle runner for
        other options); from now on requests for this file wait for this load, so no request
        takes `replacing` meanwhile."""
        loading: _Loading[RunnerT] = _Loading(load)
        loading.task = asyncio.get_running_loop().create_task(self._load(loading, replacing))
        loading.task.add_done_callback(lambda _: self._load_done(loading))
        self._loading[load.key] = loading

    def _load_done(self, loading: _Loading[RunnerT]) -> None:
        """Forget a finished load (also one cancelled before it ran) and mark its error as
        seen: every request that waited for it has been told."""
        if self._loading.get(loading.load.key) is loading:
            del self._loading[loading.load.key]
        if not loading.task.cancelled():
            loading.task.exception()
        self._changed.set()

    async def _load(
        self, loading: _Loading[RunnerT], replacing: LoadedModel[RunnerT] | None
    ) -> LoadedModel[RunnerT]:
        load = loading.load
        choices = await asyncio.to_thread(self._estimates, load)
        if replacing is not None:
            await self._check_machine(choices)  # never unload a runner for a load that cannot fit
            await self._stop(replacing)
        try:
            placement = await self._make_room(load, choices)
            started = self._clock()
            runner = await self._factory(placement.load)
        finally:
            self._reserved.pop(load.key, None)
        if self._closed:  # a factory that finished after shutdown: leave no process
            await runner.close()
            raise ServiceUnavailableError(SHUTTING_DOWN)
        return self._register(loading, placement, runner, started)

    def _register(
        self, loading: _Loading[RunnerT], placement: Placement, runner: RunnerT, started: float
    ) -> LoadedModel[RunnerT]:
        """Record a started runner, granted to every request waiting for it."""
        entry = LoadedModel(placement.load, runner, started, self._default_keep_alive)
        entry.memory, entry.size_vram = placement.memory, placement.size_vram
        entry.requested, entry.active = loading.load, loading.waiters
        entry.last_used = self._clock()
        self._loaded[loading.load.key] = entry
        if entry.idle:  # nobody left to use it: it expires like any idle runner
            self._release(entry, None)
        return entry

    async def _check_machine(self, choices: list[tuple[int, MemoryEstimate]]) -> MemorySnapshot:
        """The memory now; `InsufficientMemoryError` if even the smallest choice is larger
        than the whole machine (no eviction or wait could make it fit)."""
        snapshot = await self._snapshot()
        smallest = choices[-1][1]
        if smallest.total > snapshot.total:
            raise InsufficientMemoryError(smallest.total, snapshot.total)
        return snapshot

    async def _make_room(
        self, load: ModelLoad, choices: list[tuple[int, MemoryEstimate]]
    ) -> Placement:
        """Evict least recently used idle runners until `load` fits; reserve its memory.

        Fails at once when the smallest choice exceeds the machine's total memory, or when
        nothing is left to unload or wait for and it still does not fit.
        """
        smallest = choices[-1][1]
        while True:
            snapshot = await self._check_machine(choices)
            placement = self._place(load, choices, snapshot)
            if placement is not None:
                self._reserved[load.key] = placement.memory
                return placement
            idle = [e for e in self._loaded.values() if e.idle and e.stopping is None]
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
                return _on_devices(replace(load, num_parallel=parallel), memory, snapshot)
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

    # -- stopping ---------------------------------------------------------------------------

    async def _stop(self, entry: LoadedModel[RunnerT]) -> None:
        """Stop a runner and wait until it has exited; a caller that is cancelled meanwhile
        does not interrupt the close."""
        await asyncio.shield(self._stop_task(entry))

    def _stop_task(self, entry: LoadedModel[RunnerT]) -> asyncio.Task[None]:
        """The one task that closes `entry` (started on first call)."""
        if entry.stopping is None:
            entry.stopping = asyncio.get_running_loop().create_task(self._close(entry))
            entry.stopping.add_done_callback(_log_failure)
        return entry.stopping

    async def _close(self, entry: LoadedModel[RunnerT]) -> None:
        log.info("unloading %s", entry.load.name)
        try:
            await entry.runner.close()
        finally:
            if self._loaded.get(entry.load.key) is entry:
                del self._loaded[entry.load.key]
            self._changed.set()

    def _drop_dead(self) -> None:
        """Forget runners whose process exited; closing them reaps the process and its client."""
        for key, entry in list(self._loaded.items()):
            if not entry.runner.alive and entry.stopping is None:
                log.warning("runner for %s exited; it will be restarted on demand", entry.load.name)
                del self._loaded[key]
                self._changed.set()
                with contextlib.suppress(RuntimeError):  # no loop: nothing to reap with
                    self._stop_task(entry)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("unloading failed: %s", task.exception())
