"""A real runner (SmolLM2) changes its decode thread count between decodes when told to
(`POST /threads`, the scheduler's way to share the cores between busy runners)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ollamapy.errors import BadRequestError
from ollamapy.llm import ProcessRunner, RunnerSpec, start_runner
from ollamapy.runner.protocol import CompletionDone, CompletionRequest, ThreadsReply
from ollamapy.types.options import RunnerOptions, SamplingOptions
from tests.llm.conftest import LoopThread

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def runner(loop: LoopThread, smollm2: Path) -> Iterator[ProcessRunner]:
    spec = RunnerSpec(smollm2, options=RunnerOptions(num_ctx=256, num_thread=2))
    handle = loop.run(start_runner(spec))
    yield handle
    loop.run(handle.close())


async def generate(runner: ProcessRunner, tokens: int) -> CompletionDone:
    request = CompletionRequest("Once upon a time", SamplingOptions(num_predict=tokens))
    async for event in runner.completion(request):
        if isinstance(event, CompletionDone):
            return event
    raise AssertionError("stream ended without done")


def test_a_new_thread_count_takes_effect_at_the_next_decode(
    loop: LoopThread, runner: ProcessRunner
) -> None:
    before = loop.run(runner.threads())
    assert (before.n_threads, before.applied) == (2, 2)
    asked = loop.run(runner.threads(1))
    assert (asked.n_threads, asked.applied) == (1, 2)  # no decode has run since
    loop.run(generate(runner, 4))
    assert loop.run(runner.threads()) == ThreadsReply(1, 1)
    loop.run(runner.set_threads(2))
    loop.run(generate(runner, 4))
    assert loop.run(runner.threads()) == ThreadsReply(2, 2)


def test_the_started_num_thread_is_an_upper_bound(loop: LoopThread, runner: ProcessRunner) -> None:
    assert loop.run(runner.threads(8)).n_threads == 2


def test_a_thread_count_below_one_is_refused(loop: LoopThread, runner: ProcessRunner) -> None:
    with pytest.raises(BadRequestError, match="n_threads"):
        loop.run(runner.threads(0))
    assert runner.alive and loop.run(runner.threads()).n_threads == 2
