"""The server's handle on a real runner process (SmolLM2): start-up, streaming,
cancellation, crashes and clean shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema  # type: ignore[import-untyped]
import numpy as np
import pytest

from ollamapy.errors import BadRequestError, RunnerError
from ollamapy.llm import ProcessRunner, Runner, RunnerSpec, start_runner
from ollamapy.runner.protocol import CompletionChunk, CompletionDone, CompletionRequest
from ollamapy.types.options import RunnerOptions, SamplingOptions
from tests.llm.conftest import LoopThread
from tests.scheduler.live import process_gone

pytestmark = pytest.mark.integration


def chat(question: str) -> str:
    return f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


def spec(model: Path, **kw: Any) -> RunnerSpec:
    return RunnerSpec(model, options=RunnerOptions(num_ctx=512), **kw)


async def generate(
    runner: Runner, prompt: str, fmt: Any = None, **options: Any
) -> tuple[str, CompletionDone]:
    request = CompletionRequest(prompt, SamplingOptions(**options), format=fmt)
    text: list[str] = []
    async for event in runner.completion(request):
        if isinstance(event, CompletionChunk):
            text.append(event.content)
        else:
            return "".join(text), event
    raise AssertionError("stream ended without done")


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still "exists": check its state
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    return False


@pytest.fixture(scope="module")
def runner(loop: LoopThread, smollm2: Path) -> Iterator[ProcessRunner]:
    handle = loop.run(start_runner(spec(smollm2, num_parallel=2)))
    yield handle
    loop.run(handle.close())


def test_runner_protocol_and_info(runner: ProcessRunner) -> None:
    assert isinstance(runner, Runner)
    assert runner.alive and runner.pid is not None
    info = runner.info
    assert (info.n_ctx, info.n_parallel, info.n_vocab) == (512, 2, 49152)
    assert info.n_ctx_train == 8192 and not info.has_encoder


def test_tokenize_round_trip(loop: LoopThread, runner: ProcessRunner) -> None:
    tokens = loop.run(runner.tokenize("Hello, world!"))
    assert tokens and loop.run(runner.detokenize(tokens)) == "Hello, world!"
    special = loop.run(runner.tokenize("<|im_start|>"))
    assert len(special) == 1


def test_embed_reads_the_packed_matrix(loop: LoopThread, runner: ProcessRunner) -> None:
    vectors, count = loop.run(runner.embed(["Hello, world!", "Goodbye."]))
    assert vectors.dtype == np.float32 and vectors.shape == (2, 576)
    assert np.isfinite(vectors).all() and not np.array_equal(vectors[0], vectors[1])
    assert count >= 4
    alone, _ = loop.run(runner.embed(["Goodbye."]))
    assert np.allclose(alone[0], vectors[1], rtol=1e-3, atol=1e-3)


def test_greedy_completion_and_stats(loop: LoopThread, runner: ProcessRunner) -> None:
    text, done = loop.run(generate(runner, chat("What is 2+2?"), temperature=0, num_predict=8))
    again, _ = loop.run(generate(runner, chat("What is 2+2?"), temperature=0, num_predict=8))
    assert text and text == again
    assert done.eval_count <= 8 and done.prompt_eval_count >= 1
    assert done.eval_duration > 0 and done.prompt_eval_duration > 0


def test_an_unstreamed_completion_sends_its_text_in_one_chunk(
    loop: LoopThread, runner: ProcessRunner
) -> None:
    streamed, _ = loop.run(generate(runner, chat("Count to 20."), temperature=0, num_predict=16))

    async def events() -> list[CompletionChunk | CompletionDone]:
        options = SamplingOptions(temperature=0, num_predict=16)
        request = CompletionRequest(chat("Count to 20."), options, stream=False)
        return [event async for event in runner.completion(request)]

    chunk, done = loop.run(events())
    assert chunk == CompletionChunk(streamed) and isinstance(done, CompletionDone)
    assert done.eval_count == 16


def test_a_finished_completion_leaves_its_connection_for_the_next(
    loop: LoopThread, runner: ProcessRunner
) -> None:
    """Each request would otherwise open (and the runner accept) a new connection."""
    connections = runner._connections
    assert connections is not None
    loop.run(generate(runner, chat("Hi"), temperature=0, num_predict=2))
    kept = connections.idle
    assert kept >= 1
    loop.run(generate(runner, chat("Hi"), temperature=0, num_predict=2))
    assert connections.idle == kept


def test_num_predict_length(loop: LoopThread, runner: ProcessRunner) -> None:
    _, done = loop.run(generate(runner, chat("Count to 100."), temperature=0, num_predict=5))
    assert (done.done_reason, done.eval_count) == ("length", 5)


def test_schema_format(loop: LoopThread, runner: ProcessRunner) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    text, done = loop.run(
        generate(runner, chat("Name a city as JSON."), fmt=schema, temperature=0, num_predict=48)
    )
    assert done.done_reason == "stop", text
    jsonschema.validate(json.loads(text), schema)


def test_bad_schema_is_a_bad_request(loop: LoopThread, runner: ProcessRunner) -> None:
    with pytest.raises(BadRequestError):
        loop.run(generate(runner, chat("x"), fmt={"type": "object", "$ref": "#/nope"}))


def test_parallel_streams(loop: LoopThread, runner: ProcessRunner) -> None:
    prompts = [chat("Name a color."), chat("Name an animal.")]

    async def both() -> list[str]:
        results = await asyncio.gather(
            *(generate(runner, q, temperature=0, num_predict=12) for q in prompts)
        )
        return [text for text, _ in results]

    alone = [loop.run(generate(runner, q, temperature=0, num_predict=12))[0] for q in prompts]
    assert loop.run(both()) == alone


def test_disconnect_cancels_generation(loop: LoopThread, runner: ProcessRunner) -> None:
    async def start_and_abandon() -> None:
        request = CompletionRequest(
            chat("Write a very long essay."), SamplingOptions(num_predict=-1)
        )
        stream = runner.completion(request)
        async for _ in stream:
            break
        await stream.aclose()

    loop.run(start_and_abandon())
    loop.run(start_and_abandon())
    # both slots were freed: two short requests complete promptly
    started = time.monotonic()
    for _ in range(2):
        _, done = loop.run(generate(runner, chat("Hi"), temperature=0, num_predict=2), timeout=60)
        assert done.eval_count == 2
    assert time.monotonic() - started < 60


def test_task_cancellation_cancels_generation(loop: LoopThread, runner: ProcessRunner) -> None:
    async def cancel_midway() -> None:
        task = asyncio.ensure_future(
            generate(runner, chat("Write a very long essay."), num_predict=-1)
        )
        await asyncio.sleep(1.0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    loop.run(cancel_midway())
    _, done = loop.run(generate(runner, chat("Hi"), temperature=0, num_predict=2), timeout=60)
    assert done.eval_count == 2


def test_runner_killed_mid_stream(loop: LoopThread, smollm2: Path) -> None:
    exits: list[int | None] = []
    handle = loop.run(start_runner(spec(smollm2), on_exit=lambda r: exits.append(r.returncode)))

    async def consume() -> None:
        request = CompletionRequest(chat("Write a long story."), SamplingOptions(num_predict=-1))
        async for event in handle.completion(request):
            assert isinstance(event, CompletionChunk)
            assert handle.pid is not None
            os.kill(handle.pid, signal.SIGKILL)

    with pytest.raises(RunnerError, match="terminated"):
        loop.run(consume())
    assert loop.run(handle.wait()) == -signal.SIGKILL
    assert not handle.alive and exits == [-signal.SIGKILL]
    with pytest.raises(RunnerError):
        loop.run(handle.tokenize("x"))
    loop.run(handle.close())


def test_a_dead_runner_is_not_alive_before_the_loop_hears_of_it(
    loop: LoopThread, smollm2: Path
) -> None:
    handle = loop.run(start_runner(spec(smollm2)))

    async def kill_and_look() -> bool:
        assert handle.pid is not None and handle.alive
        os.kill(handle.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while not process_gone(handle.pid) and time.monotonic() < deadline:
            time.sleep(0.01)  # blocks the loop: no exit callback can run meanwhile
        time.sleep(0.2)  # let the exit finish: a zombie, or reaped by the watcher thread
        assert handle.returncode is None  # the loop has not heard of it yet
        return handle.alive

    assert loop.run(kill_and_look()) is False
    loop.run(handle.close())


@pytest.mark.parametrize(
    ("content", "reason"),
    [(None, "not found"), (b"this is not a gguf file", "error loading model")],
)
def test_bad_model_is_a_runner_error(
    loop: LoopThread, tmp_path: Path, content: bytes | None, reason: str
) -> None:
    path = tmp_path / "model.gguf"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(RunnerError, match=reason):
        loop.run(start_runner(spec(path)))


def test_close_leaves_no_process(loop: LoopThread, smollm2: Path) -> None:
    handle = loop.run(start_runner(spec(smollm2)))
    pid, port = handle.pid, handle.port
    assert pid is not None and pid_exists(pid)
    loop.run(handle.close())
    assert handle.returncode == 0  # a clean, graceful exit
    assert not pid_exists(pid)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)


PARENT_SCRIPT = """
import asyncio, sys
from ollamapy.llm import RunnerSpec, start_runner
from ollamapy.types.options import RunnerOptions

async def main():
    runner = await start_runner(RunnerSpec(sys.argv[1], options=RunnerOptions(num_ctx=256)))
    print(runner.pid, flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


def test_runner_exits_when_the_server_is_killed(smollm2: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT_SCRIPT, str(smollm2)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert pid_exists(child)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 15
    while pid_exists(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_exists(child)
