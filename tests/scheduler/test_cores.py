"""Sharing the cores between busy runners: the policy, and the scheduler applying it as
requests start and end (fake runners that record the thread counts they are given)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ollamapy.errors import RunnerError
from ollamapy.scheduler import ModelLoad, Scheduler
from ollamapy.scheduler.cores import shares
from ollamapy.types import RunnerOptions


class ThreadedRunner:
    """A fake runner that records every thread count the scheduler sets."""

    def __init__(self, load: ModelLoad) -> None:
        self.load = load
        self.alive = True
        self.threads: list[int] = []
        self.fail = False

    async def set_threads(self, n_threads: int) -> None:
        await asyncio.sleep(0)
        if self.fail:
            raise RunnerError("runner is closed")
        self.threads.append(n_threads)

    async def close(self) -> None:
        self.alive = False


def model(name: str, num_thread: int = 0) -> ModelLoad:
    options = RunnerOptions(num_thread=num_thread)
    return ModelLoad(name, Path(f"/blobs/{name}"), f"sha256:{name}", options)


def make(cores: int) -> tuple[Scheduler[ThreadedRunner], dict[str, ThreadedRunner]]:
    runners: dict[str, ThreadedRunner] = {}

    async def factory(load: ModelLoad) -> ThreadedRunner:
        runners[load.name] = ThreadedRunner(load)
        return runners[load.name]

    async def set_threads(runner: ThreadedRunner, n_threads: int) -> None:
        await runner.set_threads(n_threads)

    scheduler = Scheduler(factory, default_keep_alive=300, cores=cores, set_threads=set_threads)
    return scheduler, runners


async def settle() -> None:
    """Let the re-sharing that a finished request starts in the background run."""
    for _ in range(10):
        await asyncio.sleep(0)


# -- the policy ------------------------------------------------------------------------------


def test_one_busy_runner_gets_every_core() -> None:
    assert shares(8, [("a", 0)]) == {"a": 8}


def test_busy_runners_split_the_cores_evenly_first_listed_gets_the_remainder() -> None:
    assert shares(2, [("a", 0), ("b", 0)]) == {"a": 1, "b": 1}
    assert shares(7, [("a", 0), ("b", 0)]) == {"a": 4, "b": 3}
    assert shares(9, [("a", 0), ("b", 0), ("c", 0)]) == {"a": 3, "b": 3, "c": 3}


def test_more_busy_runners_than_cores_each_keep_one_thread() -> None:
    assert shares(2, [("a", 0), ("b", 0), ("c", 0)]) == {"a": 1, "b": 1, "c": 1}


def test_num_thread_is_an_upper_bound_and_the_rest_goes_to_the_others() -> None:
    assert shares(8, [("a", 2), ("b", 0)]) == {"a": 2, "b": 6}
    assert shares(8, [("a", 0), ("b", 6)]) == {"a": 4, "b": 4}
    assert shares(4, [("a", 16)]) == {"a": 4}
    assert shares(8, [("a", 1), ("b", 2), ("c", 0)]) == {"a": 1, "b": 2, "c": 5}


# -- the scheduler applying it -----------------------------------------------------------------


async def test_a_model_alone_keeps_every_core_without_a_call() -> None:
    scheduler, runners = make(cores=2)
    async with scheduler.use(model("a")):
        pass
    await settle()
    assert runners["a"].threads == []  # started with every core: nothing to change
    await scheduler.shutdown()


async def test_two_busy_models_split_the_cores_and_the_survivor_gets_them_back() -> None:
    scheduler, runners = make(cores=2)
    async with scheduler.use(model("a")) as a:
        async with scheduler.use(model("b")) as b:
            assert (a.threads, b.threads) == (1, 1)
            assert runners["a"].threads == [1] and runners["b"].threads == [1]
        await settle()
        assert runners["a"].threads == [1, 2]  # b ended: a has both cores again
    await settle()
    async with scheduler.use(model("b")):  # b alone now, started its last turn with 1
        assert runners["b"].threads == [1, 2]
    await scheduler.shutdown()


async def test_the_new_runner_has_its_share_before_its_request_runs() -> None:
    scheduler, runners = make(cores=4)
    async with scheduler.use(model("a")), scheduler.use(model("b")):
        # inside the second `use`, both changes have been made already
        assert runners["a"].threads == [2] and runners["b"].threads == [2]
    await scheduler.shutdown()


async def test_parallel_requests_on_one_runner_count_it_once() -> None:
    scheduler, runners = make(cores=2)
    async with scheduler.use(model("a")), scheduler.use(model("a")):
        assert runners["a"].threads == []
    await scheduler.shutdown()


async def test_num_thread_caps_a_runners_share() -> None:
    scheduler, runners = make(cores=8)
    async with scheduler.use(model("a", num_thread=2)) as a, scheduler.use(model("b")) as b:
        assert (a.threads, b.threads) == (2, 6)
        assert runners["a"].threads == [] and runners["b"].threads == [6]
    await scheduler.shutdown()


async def test_three_models_on_two_cores_then_two_then_one() -> None:
    scheduler, runners = make(cores=2)
    async with scheduler.use(model("a")) as a:
        async with scheduler.use(model("b")) as b:
            async with scheduler.use(model("c")) as c:
                assert (a.threads, b.threads, c.threads) == (1, 1, 1)
            await settle()
            assert (a.threads, b.threads) == (1, 1)  # still two busy runners on two cores
        await settle()
        assert a.threads == 2 and runners["a"].threads == [1, 2]
    await scheduler.shutdown()


async def test_a_runner_that_cannot_be_told_keeps_its_count_and_others_still_change() -> None:
    scheduler, runners = make(cores=2)
    async with scheduler.use(model("a")) as a:
        runners["a"].fail = True
        async with scheduler.use(model("b")) as b:
            assert a.threads == 2 and b.threads == 1
            assert runners["b"].threads == [1]
    await scheduler.shutdown()


async def test_sharing_off_never_calls_the_runners() -> None:
    scheduler, runners = make(cores=0)
    async with scheduler.use(model("a")), scheduler.use(model("b")):
        pass
    await settle()
    assert runners["a"].threads == [] and runners["b"].threads == []
    await scheduler.shutdown()
