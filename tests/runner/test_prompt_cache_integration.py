"""The prompt cache through the real engine on SmolLM2: a conversation whose slot was
taken by another comes back from host RAM, and from disk after the runner restarted,
with the same greedy text as a cold evaluation."""

from __future__ import annotations

import asyncio
import contextlib
import queue
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ollamapy.llm import RunnerSpec, start_runner
from ollamapy.runner.engine import Engine, Job
from ollamapy.runner.launch import LaunchArgs
from ollamapy.runner.loader import LoadedModel, load
from ollamapy.runner.native import SamplerChain, init_backend
from ollamapy.runner.prompt_cache import SUFFIX
from ollamapy.runner.protocol import (
    CompletionChunk,
    CompletionDone,
    CompletionEvent,
    CompletionRequest,
)
from ollamapy.runner.sampling import plan_sampler_chain
from ollamapy.runner.server import prompt_cache_for
from ollamapy.types.options import RunnerOptions, SamplingOptions

pytestmark = pytest.mark.integration

TIMEOUT = 120.0
GREEDY: dict[str, Any] = {"temperature": 0.0, "num_predict": 8}
STORY = (
    "The lighthouse keeper wrote in the log every evening: the wind, the height of the "
    "waves, the ships that passed and the birds that rested on the gallery rail. "
)


def conversation(tag: str, turns: int = 2) -> str:
    """A chat of over a hundred tokens; another tag shares only a few tokens with it."""
    history = "".join(
        f"<|im_start|>user\n[{tag}] Tell me part {i} of the story.<|im_end|>\n"
        f"<|im_start|>assistant\n{STORY}<|im_end|>\n"
        for i in range(turns)
    )
    return f"{history}<|im_start|>user\n[{tag}] How does it end?<|im_end|>\n<|im_start|>assistant\n"


class Engines:
    """A loaded SmolLM2 with its engine, optionally with a prompt cache."""

    def __init__(self, loaded: LoadedModel, engine: Engine) -> None:
        self.loaded, self.engine = loaded, engine

    def run(self, prompt: str) -> tuple[str, CompletionDone]:
        model = self.loaded.model
        opts = SamplingOptions(**GREEDY)
        tokens = model.tokenize(prompt, add_special=True)
        plan = plan_sampler_chain(opts, n_vocab=model.n_vocab, n_ctx=self.engine.n_ctx)
        events: queue.Queue[CompletionEvent] = queue.Queue()
        self.engine.submit(Job(tokens, opts, SamplerChain(model, plan, tokens), events.put))
        text: list[str] = []
        while True:
            event = events.get(timeout=TIMEOUT)
            if isinstance(event, CompletionChunk):
                text.append(event.content)
            else:
                assert isinstance(event, CompletionDone), event
                return "".join(text), event


@contextlib.contextmanager
def engine(model: Path, *, cache: int = 0, folder: Path | None = None) -> Iterator[Engines]:
    """One slot, so a second conversation always takes the first one's slot; on exit the
    runner's shutdown path runs (close the engine, save the prompt cache, free)."""
    init_backend()
    args = LaunchArgs(
        model=str(model),
        num_ctx=1024,
        parallel=1,
        prompt_cache=cache,
        prompt_cache_dir=str(folder) if folder else None,
    )
    loaded = load(args)
    running = Engine(
        loaded.model,
        loaded.context,
        n_batch=args.num_batch,
        prompt_cache=prompt_cache_for(args, loaded),
    )
    running.start()
    try:
        yield Engines(loaded, running)
    finally:
        if running.close():
            running.save_prompt_cache()
        loaded.close()


PROMPT = conversation("kept")
OTHER = conversation("other")


@pytest.fixture(scope="module")
def cold(smollm2: Path) -> str:
    """The greedy answer to PROMPT with no prompt cache at all (evaluated whole)."""
    with engine(smollm2) as plain:
        return plain.run(PROMPT)[0]


def test_a_conversation_whose_slot_was_taken_comes_back_from_host_ram(
    smollm2: Path, cold: str
) -> None:
    with engine(smollm2, cache=64 << 20) as cached:
        prompt = PROMPT
        first_text, first = cached.run(prompt)
        cached.run(OTHER)  # takes the only slot
        again_text, again = cached.run(prompt)
    assert first.prompt_cached_count == 0 and first.prompt_cached_source == ""
    assert again.prompt_cached_source == "host"
    assert again.prompt_cached_count == again.prompt_eval_count - 1
    assert first_text == again_text == cold


def test_without_the_host_cache_the_slot_loses_it(smollm2: Path) -> None:
    with engine(smollm2, cache=0) as plain:
        prompt = PROMPT
        plain.run(prompt)
        plain.run(OTHER)
        _, again = plain.run(prompt)
    assert again.prompt_cached_count < 16 and again.prompt_cached_source in ("", "slot")


def test_the_prompt_cache_survives_a_restart_on_disk(
    smollm2: Path, tmp_path: Path, cold: str
) -> None:
    prompt = PROMPT
    with engine(smollm2, cache=64 << 20, folder=tmp_path) as first:
        first.run(prompt)
    assert list(tmp_path.glob(f"*/*{SUFFIX}"))
    with engine(smollm2, cache=64 << 20, folder=tmp_path) as second:
        text, done = second.run(prompt)
    assert done.prompt_cached_source == "disk"
    assert done.prompt_cached_count == done.prompt_eval_count - 1
    assert text == cold


def test_a_file_from_another_model_is_removed_not_loaded(smollm2: Path, tmp_path: Path) -> None:
    prompt = PROMPT
    with engine(smollm2, cache=64 << 20, folder=tmp_path) as first:
        first.run(prompt)
    (saved,) = tmp_path.glob(f"*/*{SUFFIX}")
    foreign = tmp_path / "somewhere-else"
    foreign.mkdir()
    raw = saved.read_bytes()
    # The same KV bytes, but a header naming another model: copied into this model's folder.
    (saved.parent / f"foreign{SUFFIX}").write_bytes(raw.replace(b"file:", b"fake:", 1))
    saved.unlink()
    with engine(smollm2, cache=64 << 20, folder=tmp_path) as second:
        _, done = second.run(prompt)
        assert not (saved.parent / f"foreign{SUFFIX}").exists()
    assert done.prompt_cached_count < 16


def test_a_runner_process_saves_at_stop_and_the_next_one_restores(
    smollm2: Path, tmp_path: Path, cold: str
) -> None:
    """The real path: SIGTERM (keep_alive expiry, `ollama stop`, server shutdown) saves,
    the next runner of the same model lists the files and reads one on demand."""
    spec = RunnerSpec(
        smollm2,
        options=RunnerOptions(num_ctx=1024),
        num_parallel=1,
        prompt_cache=64 << 20,
        prompt_cache_dir=str(tmp_path),
    )
    request = CompletionRequest(PROMPT, SamplingOptions(**GREEDY))

    async def once() -> tuple[str, CompletionDone]:
        runner = await start_runner(spec)
        try:
            text: list[str] = []
            async for event in runner.completion(request):
                if isinstance(event, CompletionChunk):
                    text.append(event.content)
                else:
                    return "".join(text), event
            raise AssertionError("no done line")
        finally:
            await runner.close()

    _, first = asyncio.run(once())
    text, second = asyncio.run(once())
    assert first.prompt_cached_count == 0
    assert second.prompt_cached_source == "disk"
    assert second.prompt_cached_count == second.prompt_eval_count - 1
    assert text == cold
