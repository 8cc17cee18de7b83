"""The scheduler's contract, specified against a fake runner and an injected clock."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ollamapy.errors import RunnerError, ServiceUnavailableError
from ollamapy.scheduler import ModelLoad, Scheduler
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
    clock: Clock | None = None, **kwargs: int
) -> tuple[Scheduler[FakeRunner], list[FakeRunner]]:
    started: list[FakeRunner] = []

    async def factory(load: ModelLoad) -> FakeRunner:
        await asyncio.sleep(0)
        runner = FakeRunner(load)
        started.append(runner)
        return runner

    scheduler = Scheduler(factory, default_keep_alive=300.0, clock=clock or Clock(), **kwargs)
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
