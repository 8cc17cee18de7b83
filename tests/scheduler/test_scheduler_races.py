"""The scheduler under concurrency: reloads, shared loads, cancelled and failing starts.

The fake runners here behave like processes: a start takes time (and can fail or be
cancelled, closing what it spawned, as `llm.start_runner` does), and a close takes time
too. Every runner ever spawned is recorded, so a test can check that none is left running
without the scheduler listing it.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from ollamapy.errors import RunnerError
from ollamapy.scheduler import (
    InsufficientMemoryError,
    LoadedModel,
    MemoryEstimate,
    MemoryPool,
    MemorySnapshot,
    ModelLoad,
    Scheduler,
)
from ollamapy.types import RunnerOptions

MIB = 1 << 20
GIB = 1 << 30


class Process:
    """A fake runner process: spawned by the factory, alive until closed."""

    def __init__(self, load: ModelLoad, close_s: float) -> None:
        self.load = load
        self.closed = False
        self.close_s = close_s
        self.exit: asyncio.Event | None = None

    @property
    def alive(self) -> bool:
        return not self.closed

    async def close(self) -> None:
        await asyncio.sleep(self.close_s)
        if self.exit is not None:
            await self.exit.wait()
        self.closed = True


class Machine:
    """A runner factory that spawns `Process`es and records them all."""

    def __init__(self, rng: random.Random | None = None, fail_rate: float = 0.0) -> None:
        self.rng = rng or random.Random(0)
        self.fail_rate = fail_rate
        self.spawned: list[Process] = []
        self.gate: asyncio.Event | None = None
        self.overlaps: list[Path] = []

    def live(self, path: Path | None = None) -> list[Process]:
        return [p for p in self.spawned if p.alive and path in (None, p.load.model_path)]

    async def start(self, load: ModelLoad) -> Process:
        if self.live(load.model_path):
            self.overlaps.append(load.model_path)  # two runners of one file at once
        process = Process(load, close_s=self.rng.uniform(0, 0.003))
        self.spawned.append(process)
        try:
            if self.gate is not None:
                await self.gate.wait()
            await asyncio.sleep(self.rng.uniform(0, 0.004))
            if self.rng.random() < self.fail_rate:
                raise RunnerError("llama runner process has terminated: injected")
        except BaseException:
            await process.close()  # a failed or cancelled start leaves no process
            raise
        return process


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Let the loop run until `predicate()` holds; fail after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.001)


async def steps(count: int) -> None:
    """Let every ready task run `count` times over."""
    for _ in range(count):
        await asyncio.sleep(0)


def load(name: str, num_ctx: int) -> ModelLoad:
    return ModelLoad(name, Path(f"/blobs/{name}"), f"sha256:{name}", RunnerOptions(num_ctx=num_ctx))


def scheduler_for(machine: Machine, max_loaded: int = 0) -> Scheduler[Process]:
    return Scheduler(machine.start, default_keep_alive=300.0, max_loaded=max_loaded)


def unlisted(machine: Machine, scheduler: Scheduler[Process]) -> list[Process]:
    """Live runners the scheduler does not list (it must list every one it started)."""
    listed = {id(entry.runner) for entry in scheduler.loaded()}
    return [p for p in machine.live() if id(p) not in listed]


async def test_reload_for_two_requests_at_once_happens_once() -> None:
    machine = Machine()
    scheduler = scheduler_for(machine)
    await scheduler.load(load("a", 2048))

    async def request() -> Process:
        async with scheduler.use(load("a", 4096)) as entry:
            return entry.runner

    first, second = await asyncio.gather(request(), request())
    assert first is second and first.load.options.num_ctx == 4096
    assert len(machine.spawned) == 2 and machine.live() == [first]
    assert unlisted(machine, scheduler) == [] and machine.overlaps == []
    await scheduler.shutdown()
    assert machine.live() == []


async def test_requests_for_conflicting_options_take_turns() -> None:
    machine = Machine()
    scheduler = scheduler_for(machine)
    await scheduler.load(load("a", 1024))

    async def request(num_ctx: int) -> int:
        async with scheduler.use(load("a", num_ctx)) as entry:
            await asyncio.sleep(0.002)
            assert entry.runner.alive
            return entry.load.options.num_ctx

    got = await asyncio.gather(request(2048), request(4096), request(2048), request(4096))
    assert sorted(got) == [2048, 2048, 4096, 4096]
    assert machine.overlaps == [] and unlisted(machine, scheduler) == []
    await scheduler.shutdown()


async def test_requests_for_the_loaded_options_queue_behind_a_waiting_reload() -> None:
    machine = Machine()
    scheduler = scheduler_for(machine)
    release = asyncio.Event()
    order: list[int] = []

    async def request(num_ctx: int, hold: asyncio.Event | None = None) -> None:
        async with scheduler.use(load("a", num_ctx)):
            order.append(num_ctx)
            if hold is not None:
                await hold.wait()

    holder = asyncio.create_task(request(2048, release))
    await until(lambda: order == [2048])
    reload = asyncio.create_task(request(4096))
    await until(lambda: scheduler.loaded()[0].waiting_for_reload == 1)
    later = asyncio.create_task(request(2048))  # could use the runner, but it is draining
    await steps(50)
    assert order == [2048]
    release.set()
    await asyncio.wait_for(asyncio.gather(holder, reload, later), 2.0)
    assert order == [2048, 4096, 2048]
    await scheduler.shutdown()


async def test_a_start_nobody_waits_for_any_more_is_cancelled_and_closed() -> None:
    machine = Machine()
    machine.gate = asyncio.Event()
    scheduler = scheduler_for(machine)
    waiter = asyncio.create_task(scheduler.load(load("a", 2048)))
    await until(lambda: len(machine.live()) == 1)  # spawned, still loading
    waiter.cancel()
    await until(lambda: machine.live() == [] and scheduler.starting() == [])
    assert scheduler.loaded() == []
    machine.gate.set()
    async with scheduler.use(load("a", 2048)) as entry:  # a later request starts afresh
        assert entry.runner is machine.spawned[1]
    await scheduler.shutdown()


async def test_a_start_goes_on_while_another_request_still_waits_for_it() -> None:
    machine = Machine()
    machine.gate = asyncio.Event()
    scheduler = scheduler_for(machine)
    first = asyncio.create_task(scheduler.load(load("a", 2048)))
    second = asyncio.create_task(scheduler.load(load("a", 2048)))
    await until(lambda: len(machine.live()) == 1)
    first.cancel()
    await steps(50)
    machine.gate.set()
    entry = await asyncio.wait_for(second, 1.0)
    assert entry.runner is machine.spawned[0] and len(machine.spawned) == 1
    assert [e.runner for e in scheduler.loaded()] == [entry.runner] and entry.idle
    await scheduler.shutdown()


async def test_a_request_cancelled_as_its_load_finishes_gives_its_turn_back() -> None:
    machine = Machine()
    scheduler = scheduler_for(machine)
    for _ in range(20):  # cancel at every step of the load in turn
        for steps in range(6):
            task = asyncio.create_task(scheduler.load(load("a", 2048 + steps)))
            for _ in range(steps):
                await asyncio.sleep(0)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    await until(lambda: not scheduler.starting() and unlisted(machine, scheduler) == [])
    assert all(entry.idle for entry in scheduler.loaded()) and machine.overlaps == []
    await scheduler.shutdown()
    assert machine.live() == []


async def test_a_runner_being_stopped_is_listed_until_it_has_exited() -> None:
    machine = Machine()
    scheduler = scheduler_for(machine)
    entry = await scheduler.load(load("a", 2048))
    entry.runner.exit = asyncio.Event()
    stopping = asyncio.create_task(scheduler.unload(entry.load.model_path))
    await steps(50)
    assert entry.runner.alive and scheduler.loaded() == [entry]
    entry.runner.exit.set()
    await stopping
    assert not entry.runner.alive and scheduler.loaded() == []


async def test_a_reload_that_can_never_fit_leaves_the_working_runner_alone() -> None:
    def by_context(wanted: ModelLoad, num_parallel: int) -> MemoryEstimate:
        return MemoryEstimate(weights=GIB, kv_cache=wanted.options.num_ctx * num_parallel * MIB)

    machine = Machine()
    scheduler = Scheduler(
        machine.start,
        default_keep_alive=300.0,
        estimator=by_context,
        memory=lambda: MemorySnapshot(MemoryPool(16 * GIB, 16 * GIB)),
    )
    working = await scheduler.load(load("a", 2048))
    with pytest.raises(InsufficientMemoryError):
        await scheduler.load(load("a", 100_000))
    assert scheduler.loaded() == [working] and working.runner.alive
    assert len(machine.spawned) == 1
    await scheduler.shutdown()


# -- stress -----------------------------------------------------------------------------

CONFIGS = [("a", 1024), ("a", 2048), ("a", 4096), ("b", 1024), ("b", 2048), ("c", 1024)]


async def one_request(
    scheduler: Scheduler[Process], rng: random.Random, held: list[LoadedModel[Process]]
) -> None:
    name, num_ctx = rng.choice(CONFIGS)
    wanted = load(name, num_ctx)
    async with scheduler.use(wanted, keep_alive=rng.choice([None, 0.0, 300.0])) as entry:
        assert entry.serves(wanted) and entry.runner.alive
        held.append(entry)
        try:
            await asyncio.sleep(rng.uniform(0, 0.004))
            assert entry.runner.alive  # nobody closes a runner while a request holds it
        finally:
            held.remove(entry)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
async def test_many_requests_with_mixed_options_and_cancellations(seed: int) -> None:
    rng = random.Random(seed)
    machine = Machine(rng, fail_rate=0.1)
    scheduler = scheduler_for(machine, max_loaded=2)
    held: list[LoadedModel[Process]] = []
    tasks = [asyncio.create_task(one_request(scheduler, rng, held)) for _ in range(150)]
    cancelled = set(rng.sample(range(len(tasks)), 40))
    for index in sorted(cancelled):
        await asyncio.sleep(rng.uniform(0, 0.003))
        tasks[index].cancel()
        assert unlisted_but_not_starting(machine, scheduler) == []
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)

    outcomes = Counter(type(r).__name__ for r in results)
    assert set(outcomes) <= {"NoneType", "CancelledError", "RunnerError"}, outcomes
    assert outcomes["NoneType"] >= 50, outcomes
    assert not any(isinstance(r, asyncio.CancelledError) for r in _uncancelled(results, cancelled))
    assert held == [] and machine.overlaps == []
    await until(lambda: not scheduler.starting() and unlisted(machine, scheduler) == [])
    assert all(entry.idle and entry.runner.alive for entry in scheduler.loaded())
    assert len(scheduler.loaded()) <= 2
    await scheduler.shutdown()
    assert machine.live() == [] and scheduler.loaded() == []


def unlisted_but_not_starting(machine: Machine, scheduler: Scheduler[Process]) -> list[Process]:
    """Live runners neither listed nor still starting: leaked ones."""
    listed = {id(entry.runner) for entry in scheduler.loaded()}
    starting = {wanted.model_path for wanted in scheduler.starting()}
    return [p for p in machine.live() if id(p) not in listed and p.load.model_path not in starting]


def _uncancelled(results: Sequence[object], cancelled: set[int]) -> list[object]:
    return [r for i, r in enumerate(results) if i not in cancelled]
