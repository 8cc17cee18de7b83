"""The scheduler's contract, specified against a fake runner and an injected clock."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path

import pytest

from ollamapy.errors import RunnerError, ServiceUnavailableError
from ollamapy.scheduler import (
    Estimator,
    InsufficientMemoryError,
    MemoryEstimate,
    MemoryPool,
    MemorySnapshot,
    ModelLoad,
    Scheduler,
)
from ollamapy.types import RunnerOptions


class FakeRunner:
    def __init__(self, load: ModelLoad) -> None:
        self.load = load
        self.alive = True
        self.closed = False

    async def close(self) -> None:
        self.closed = True
        self.alive = False


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def model(name: str, num_ctx: int = 2048) -> ModelLoad:
    return ModelLoad(name, Path(f"/blobs/{name}"), f"sha256:{name}", RunnerOptions(num_ctx=num_ctx))


def make(
    clock: Clock | None = None, max_loaded: int = 0
) -> tuple[Scheduler[FakeRunner], list[FakeRunner]]:
    started: list[FakeRunner] = []

    async def factory(load: ModelLoad) -> FakeRunner:
        await asyncio.sleep(0)
        runner = FakeRunner(load)
        started.append(runner)
        return runner

    scheduler = Scheduler(
        factory, default_keep_alive=300.0, clock=clock or Clock(), max_loaded=max_loaded
    )
    return scheduler, started


async def test_loads_once_and_shares_the_runner() -> None:
    scheduler, started = make()
    async with scheduler.use(model("a")) as first, scheduler.use(model("a")) as second:
        assert first.runner is second.runner
    assert len(started) == 1
    await scheduler.shutdown()


async def test_concurrent_requests_wait_for_one_load() -> None:
    scheduler, started = make()

    async def request() -> FakeRunner:
        async with scheduler.use(model("a")) as entry:
            return entry.runner

    runners = await asyncio.gather(*(request() for _ in range(5)))
    assert len(started) == 1 and all(r is started[0] for r in runners)
    await scheduler.shutdown()


async def test_keep_alive_expiry_unloads_idle_runner() -> None:
    clock = Clock()
    scheduler, started = make(clock)
    async with scheduler.use(model("a"), keep_alive=60):
        pass
    clock.now += 59
    await scheduler.sweep()
    assert not started[0].closed
    clock.now += 2
    await scheduler.sweep()
    assert started[0].closed and scheduler.loaded() == []


async def test_keep_alive_zero_unloads_after_the_request() -> None:
    scheduler, started = make()
    async with scheduler.use(model("a"), keep_alive=0):
        assert not started[0].closed
    await asyncio.sleep(0.01)
    assert started[0].closed


async def test_negative_keep_alive_never_expires() -> None:
    clock = Clock()
    scheduler, started = make(clock)
    async with scheduler.use(model("a"), keep_alive=float("inf")):
        pass
    clock.now += 10**9
    await scheduler.sweep()
    assert not started[0].closed
    await scheduler.shutdown()


async def test_load_time_option_change_reloads() -> None:
    scheduler, started = make()
    async with scheduler.use(model("a", num_ctx=2048)):
        pass
    async with scheduler.use(model("a", num_ctx=4096)) as entry:
        assert entry.load.options.num_ctx == 4096
    assert [r.closed for r in started] == [True, False]
    await scheduler.shutdown()


async def test_least_recently_used_idle_runner_is_evicted() -> None:
    clock = Clock()
    scheduler, started = make(clock, max_loaded=2)
    for name in ("a", "b", "a", "c"):
        clock.now += 1
        async with scheduler.use(model(name)):
            pass
    names = {entry.load.name for entry in scheduler.loaded()}
    assert names == {"a", "c"}
    assert [r.load.name for r in started if r.closed] == ["b"]
    await scheduler.shutdown()


async def test_dead_runner_is_replaced_on_next_request() -> None:
    scheduler, started = make()
    async with scheduler.use(model("a")):
        pass
    started[0].alive = False
    async with scheduler.use(model("a")) as entry:
        assert entry.runner is started[1]
    await scheduler.shutdown()


async def test_full_queue_is_503() -> None:
    gate = asyncio.Event()

    async def slow_factory(load: ModelLoad) -> FakeRunner:
        await gate.wait()
        return FakeRunner(load)

    scheduler = Scheduler(slow_factory, default_keep_alive=300.0, max_queue=1)

    async def request() -> None:
        async with scheduler.use(model("a")):
            pass

    waiting = asyncio.create_task(request())
    await asyncio.sleep(0)
    with pytest.raises(ServiceUnavailableError, match="maximum pending requests exceeded"):
        await request()
    gate.set()
    await waiting
    await scheduler.shutdown()


async def test_load_failure_reaches_every_waiter_and_is_not_cached() -> None:
    attempts = 0

    async def failing(load: ModelLoad) -> FakeRunner:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(0)
        raise RunnerError("llama runner process has terminated: bad file")

    scheduler = Scheduler(failing, default_keep_alive=300.0)

    async def request() -> None:
        async with scheduler.use(model("a")):
            pass

    results = await asyncio.gather(request(), request(), return_exceptions=True)
    assert all(isinstance(r, RunnerError) for r in results)
    with pytest.raises(RunnerError):
        await request()
    assert attempts == 2


# -- memory-aware fit -------------------------------------------------------------------

GIB = 1 << 30


class Machine:
    """A fake machine: fixed total memory, free memory the test can change."""

    def __init__(self, total: int, available: int | None = None) -> None:
        self.total = total
        self.available = total if available is None else available
        self.held: Callable[[], int] = lambda: 0

    def __call__(self) -> MemorySnapshot:
        return MemorySnapshot(MemoryPool(self.total, self.available - self.held()))


def sized(weights: dict[str, int], kv_per_slot: int = 0) -> Estimator:
    """An estimator: each model's weights in GiB, plus `kv_per_slot` GiB per parallel slot."""

    def estimate(load: ModelLoad, num_parallel: int) -> MemoryEstimate:
        return MemoryEstimate(weights[load.name] * GIB, num_parallel * kv_per_slot * GIB)

    return estimate


def fitted(
    machine: Machine, weights: dict[str, int], kv_per_slot: int = 0, max_loaded: int = 0
) -> tuple[Scheduler[FakeRunner], list[FakeRunner], Clock]:
    clock = Clock()
    started: list[FakeRunner] = []

    async def factory(load: ModelLoad) -> FakeRunner:
        await asyncio.sleep(0)
        runner = FakeRunner(load)
        started.append(runner)
        return runner

    scheduler = Scheduler(
        factory,
        default_keep_alive=300.0,
        clock=clock,
        estimator=sized(weights, kv_per_slot),
        memory=machine,
        max_loaded=max_loaded,
    )
    return scheduler, started, clock


async def test_models_that_fit_stay_loaded_together() -> None:
    scheduler, started, _ = fitted(Machine(10 * GIB), {"a": 4, "b": 4})
    for name in ("a", "b"):
        async with scheduler.use(model(name)):
            pass
    assert {e.load.name for e in scheduler.loaded()} == {"a", "b"}
    assert not any(r.closed for r in started)
    assert {e.memory.total for e in scheduler.loaded()} == {4 * GIB}
    await scheduler.shutdown()


async def test_load_that_does_not_fit_evicts_least_recently_used_idle() -> None:
    scheduler, started, clock = fitted(Machine(10 * GIB), {"a": 4, "b": 4, "c": 4})
    for name in ("a", "b", "a", "c"):
        clock.now += 1
        async with scheduler.use(model(name)):
            pass
    assert {e.load.name for e in scheduler.loaded()} == {"a", "c"}
    assert [r.load.name for r in started if r.closed] == ["b"]
    await scheduler.shutdown()


async def test_free_memory_of_other_processes_counts_too() -> None:
    machine = Machine(16 * GIB, available=6 * GIB)  # another process holds 10 GiB
    scheduler, started, _ = fitted(machine, {"a": 4, "b": 4})
    machine.held = lambda: 4 * GIB * sum(r.alive for r in started)  # as the kernel sees it
    async with scheduler.use(model("a")):
        pass
    async with scheduler.use(model("b")):
        pass
    assert [r.load.name for r in started if r.closed] == ["a"]
    await scheduler.shutdown()


async def test_model_larger_than_the_machine_fails_at_once_without_evicting() -> None:
    scheduler, started, _ = fitted(Machine(8 * GIB), {"a": 2, "huge": 9})
    async with scheduler.use(model("a")):
        pass
    with pytest.raises(InsufficientMemoryError, match=r"more system memory \(9.0 GiB\)"):
        async with scheduler.use(model("huge")):
            pass
    assert not started[0].closed and len(started) == 1
    await scheduler.shutdown()


async def test_nothing_left_to_unload_fails_with_what_is_available() -> None:
    scheduler, started, _ = fitted(Machine(8 * GIB, available=3 * GIB), {"a": 4})
    with pytest.raises(InsufficientMemoryError, match=r"than is available \(3.0 GiB\)"):
        await asyncio.wait_for(scheduler.load(model("a")), 1.0)
    assert started == []


async def test_busy_runner_is_not_evicted_and_the_load_waits_for_it() -> None:
    scheduler, started, clock = fitted(Machine(10 * GIB), {"a": 4, "b": 4, "c": 4})
    async with scheduler.use(model("b")):
        pass
    clock.now += 1
    order: list[str] = []
    async with scheduler.use(model("a")):  # "a" is busy, "b" is idle and older
        async with scheduler.use(model("c")):
            order.append("c loaded")
        assert [r.load.name for r in started if r.closed] == ["b"]
    await scheduler.shutdown()
    assert order == ["c loaded"]


async def test_load_waits_until_a_busy_runner_goes_idle() -> None:
    scheduler, started, _ = fitted(Machine(10 * GIB), {"a": 6, "b": 6})
    order: list[str] = []
    release = asyncio.Event()

    async def hold_a() -> None:
        async with scheduler.use(model("a")):
            order.append("a running")
            await release.wait()
            order.append("a done")

    async def load_b() -> None:
        async with scheduler.use(model("b")):
            order.append("b loaded")

    holder = asyncio.create_task(hold_a())
    await asyncio.sleep(0.01)
    waiter = asyncio.create_task(load_b())
    await asyncio.sleep(0.05)
    assert order == ["a running"] and not waiter.done()
    release.set()
    await asyncio.wait_for(asyncio.gather(holder, waiter), 2.0)
    assert order == ["a running", "a done", "b loaded"]
    assert [r.load.name for r in started if r.closed] == ["a"]
    await scheduler.shutdown()


async def test_loaded_model_is_served_while_another_waits_for_memory() -> None:
    scheduler, _, _ = fitted(Machine(10 * GIB), {"a": 6, "b": 6})
    release = asyncio.Event()

    async def hold_a() -> None:
        async with scheduler.use(model("a")):
            await release.wait()

    holder = asyncio.create_task(hold_a())
    await asyncio.sleep(0.01)
    waiter = asyncio.create_task(scheduler.load(model("b")))
    await asyncio.sleep(0.01)
    async with scheduler.use(model("a")) as entry:  # not blocked by the pending load of "b"
        assert entry.load.name == "a"
    release.set()
    await asyncio.wait_for(asyncio.gather(holder, waiter), 2.0)
    await scheduler.shutdown()


async def test_two_loads_at_once_with_room_for_one_do_not_deadlock() -> None:
    scheduler, started, _ = fitted(Machine(100 * GIB), {"a": 1, "b": 1}, max_loaded=1)

    async def request(name: str) -> str:
        async with scheduler.use(model(name)) as entry:
            await asyncio.sleep(0.01)
            return entry.load.name

    names = await asyncio.wait_for(asyncio.gather(request("a"), request("b")), 2.0)
    assert list(names) == ["a", "b"]
    assert len(scheduler.loaded()) == 1 and len(started) == 2
    await scheduler.shutdown()


def auto(name: str) -> ModelLoad:
    path = Path(f"/blobs/{name}")
    return ModelLoad(name, path, f"sha256:{name}", RunnerOptions(), num_parallel=0)


@pytest.mark.parametrize(("total", "expected"), [(20, 4), (5, 1)])
async def test_auto_num_parallel_is_4_when_it_fits_else_1(total: int, expected: int) -> None:
    scheduler, started, _ = fitted(Machine(total * GIB), {"a": 2}, kv_per_slot=1)
    async with scheduler.use(auto("a")) as entry:
        assert entry.load.num_parallel == expected
        assert entry.memory.total == (2 + expected) * GIB
    async with scheduler.use(auto("a")) as again:  # the chosen value does not force a reload
        assert again is entry
    assert started[0].load.num_parallel == expected and len(started) == 1
    await scheduler.shutdown()


async def test_configured_num_parallel_is_kept_even_if_4_would_fit() -> None:
    scheduler, _, _ = fitted(Machine(100 * GIB), {"a": 2}, kv_per_slot=1)
    load = ModelLoad("a", Path("/blobs/a"), "sha256:a", RunnerOptions(), num_parallel=2)
    async with scheduler.use(load) as entry:
        assert entry.load.num_parallel == 2 and entry.memory.total == 4 * GIB
    await scheduler.shutdown()


async def test_dead_runner_is_closed_to_reap_it() -> None:
    scheduler, started = make()
    async with scheduler.use(model("a")):
        pass
    started[0].alive = False
    assert scheduler.loaded() == []
    await asyncio.sleep(0)
    assert started[0].closed


async def test_load_in_progress_at_shutdown_is_cancelled() -> None:
    gate, entered = asyncio.Event(), asyncio.Event()
    cancelled: list[str] = []

    async def slow_factory(load: ModelLoad) -> FakeRunner:
        entered.set()
        try:
            await gate.wait()
        except asyncio.CancelledError:
            cancelled.append(load.name)  # a real factory closes its process here
            raise
        return FakeRunner(load)

    scheduler = Scheduler(slow_factory, default_keep_alive=300.0)
    loading = asyncio.create_task(scheduler.load(model("a")))
    await entered.wait()
    await scheduler.shutdown()
    assert cancelled == ["a"] and scheduler.loaded() == []
    with pytest.raises(ServiceUnavailableError, match="shutting down"):
        await loading
    with pytest.raises(ServiceUnavailableError, match="shutting down"):
        await scheduler.load(model("a"))


async def test_load_finishing_after_shutdown_is_stopped() -> None:
    gate, entered = asyncio.Event(), asyncio.Event()
    runners: list[FakeRunner] = []

    async def stubborn_factory(load: ModelLoad) -> FakeRunner:
        entered.set()
        while not gate.is_set():  # ignores cancellation, as a factory might
            with contextlib.suppress(asyncio.CancelledError):
                await gate.wait()
        runners.append(FakeRunner(load))
        return runners[-1]

    scheduler = Scheduler(stubborn_factory, default_keep_alive=300.0)
    loading = asyncio.create_task(scheduler.load(model("a")))
    await entered.wait()
    stopping = asyncio.create_task(scheduler.shutdown())
    await asyncio.sleep(0)
    gate.set()
    await stopping
    with pytest.raises(ServiceUnavailableError, match="shutting down"):
        await loading
    assert runners[0].closed and scheduler.loaded() == []
