"""Logprobs and `shift: false` through the real engine on SmolLM2 (in-process, no HTTP).

Under greedy sampling without penalties the chosen token is the most likely one, so its
entry must head its own top list; the entries must line up with the text actually sent
(stop strings, tokens that end inside a UTF-8 character), and asking for them must not
change the text.
"""

from __future__ import annotations

import asyncio
import math
import queue
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ollamapy.errors import BadRequestError
from ollamapy.runner.app import _make_job
from ollamapy.runner.channel import Outbox
from ollamapy.runner.engine import Engine, Job
from ollamapy.runner.loader import LoadedModel
from ollamapy.runner.native import SamplerChain
from ollamapy.runner.protocol import (
    CompletionChunk,
    CompletionDone,
    CompletionEvent,
    CompletionRequest,
)
from ollamapy.runner.sampling import plan_sampler_chain
from ollamapy.runner.tokens import PromptTokenizer
from ollamapy.types.logprobs import TokenLogprob
from ollamapy.types.options import SamplingOptions
from tests.runner.engines import running_engine

pytestmark = pytest.mark.integration

TIMEOUT = 120.0
GREEDY: dict[str, Any] = {"temperature": 0.0, "repeat_penalty": 1.0, "num_predict": 16}


def chat(question: str) -> str:
    return f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


@dataclass
class Run:
    chunks: list[CompletionChunk] = field(default_factory=list)
    done: CompletionDone | None = None

    @property
    def text(self) -> str:
        return "".join(chunk.content for chunk in self.chunks)

    @property
    def logprobs(self) -> list[TokenLogprob]:
        return [entry for chunk in self.chunks for entry in chunk.logprobs]


@dataclass
class Engine1:
    loaded: LoadedModel
    engine: Engine

    def run(
        self, prompt: str, *, logprobs: bool = True, top: int = 0, shift: bool = True, **opts: Any
    ) -> Run:
        model = self.loaded.model
        options = SamplingOptions(**opts)
        tokens = model.tokenize(prompt, add_special=True)
        plan = plan_sampler_chain(options, n_vocab=model.n_vocab, n_ctx=self.engine.n_ctx)
        events: queue.Queue[CompletionEvent] = queue.Queue()
        sampler = SamplerChain(model, plan, tokens)
        job = Job(tokens, options, sampler, events.put, logprobs=logprobs, top_logprobs=top)
        job.shift = shift
        self.engine.submit(job)
        run = Run()
        while True:
            event = events.get(timeout=TIMEOUT)
            if isinstance(event, CompletionDone):
                run.done = event
                return run
            assert isinstance(event, CompletionChunk), event
            run.chunks.append(event)


def _engine(model_path: Path, **launch: Any) -> Iterator[Engine1]:
    with running_engine(model_path, **launch) as (loaded, engine):
        yield Engine1(loaded, engine)


@pytest.fixture(scope="module")
def smol(smollm2: Path) -> Iterator[Engine1]:
    yield from _engine(smollm2, num_ctx=512, parallel=2)


@pytest.fixture(scope="module")
def tiny(smollm2: Path) -> Iterator[Engine1]:
    yield from _engine(smollm2, num_ctx=64, parallel=1, num_batch=64)


QUESTION = chat("Name three colours of the rainbow.")


def test_greedy_choice_heads_its_sorted_top_list(smol: Engine1) -> None:
    run = smol.run(QUESTION, top=5, **GREEDY)
    assert run.done is not None and run.done.eval_count == len(run.logprobs) == 16
    for entry in run.logprobs:
        values = [top.logprob for top in entry.top_logprobs]
        assert len(values) == 5
        assert values == sorted(values, reverse=True)
        assert (entry.token, entry.logprob) == (entry.top_logprobs[0].token, values[0])
        assert entry.logprob <= 0.0
        assert sum(math.exp(v) for v in values) <= 1.0 + 1e-6
        assert bytes(entry.bytes).decode() == entry.token
    assert "".join(entry.token for entry in run.logprobs) == run.text


def test_entries_ride_on_the_chunk_that_sends_their_text(smol: Engine1) -> None:
    run = smol.run(QUESTION, **GREEDY)
    for chunk in run.chunks:
        assert "".join(entry.token for entry in chunk.logprobs) == chunk.content
        assert all(not entry.top_logprobs for entry in chunk.logprobs)


def test_asking_for_logprobs_changes_neither_text_nor_tokens(smol: Engine1) -> None:
    plain = smol.run(QUESTION, logprobs=False, **GREEDY)
    with_logprobs = smol.run(QUESTION, top=20, **GREEDY)
    assert plain.text == with_logprobs.text
    assert plain.done is not None and with_logprobs.done is not None
    assert plain.done.tokens == with_logprobs.done.tokens
    assert all(not chunk.logprobs for chunk in plain.chunks)


def test_values_do_not_depend_on_sampling_options(smol: Engine1) -> None:
    """Raw log-softmax: a penalty or a temperature changes the pick, never the values of
    the same prefix (so the first token's entry is the same either way)."""
    greedy = smol.run(QUESTION, top=3, **GREEDY)
    sampled = smol.run(QUESTION, top=3, temperature=0.7, seed=3, repeat_penalty=1.3, num_predict=1)
    assert greedy.logprobs[0].top_logprobs == sampled.logprobs[0].top_logprobs


def test_a_token_swallowed_by_a_stop_string_has_no_entry(smol: Engine1) -> None:
    base = smol.run(QUESTION, **GREEDY)
    tokens = [entry.token for entry in base.logprobs]
    cut = next(i for i, token in enumerate(tokens) if i >= 2 and token.strip())
    stopped = smol.run(QUESTION, stop=[tokens[cut]], **GREEDY)
    assert stopped.done is not None and stopped.done.done_reason == "stop"
    assert stopped.text == "".join(tokens[:cut])
    assert [entry.token for entry in stopped.logprobs] == tokens[:cut]


def test_tokens_split_inside_a_character_each_have_an_entry(smol: Engine1) -> None:
    run = smol.run(chat("Reply with three emojis."), temperature=0, num_predict=12)
    assert run.done is not None
    assert any(ord(ch) > 0xFFFF for ch in run.text)
    assert len(run.logprobs) == run.done.eval_count
    assert b"".join(bytes(entry.bytes) for entry in run.logprobs) == run.text.encode()
    for chunk in run.chunks:
        assert b"".join(bytes(e.bytes) for e in chunk.logprobs) == chunk.content.encode()


def test_shift_false_ends_with_length_when_the_context_is_full(tiny: Engine1) -> None:
    prompt = chat("Tell me a story.")
    prompt_len = len(tiny.loaded.model.tokenize(prompt, add_special=True))
    wanted = tiny.engine.n_ctx - prompt_len + 16  # only reachable by shifting
    run = tiny.run(prompt, logprobs=False, shift=False, temperature=0, num_predict=wanted)
    assert run.done is not None and run.done.done_reason == "length"
    assert prompt_len + run.done.eval_count == tiny.engine.n_ctx + 1
    shifted = tiny.run(prompt, logprobs=False, temperature=0, num_predict=wanted)
    assert shifted.done is not None and shifted.done.eval_count == wanted


def test_truncate_false_refuses_a_prompt_longer_than_the_context(tiny: Engine1) -> None:
    loop = asyncio.new_event_loop()
    try:
        outbox = Outbox(loop)
        long_prompt = chat("word " * 400)
        with pytest.raises(BadRequestError, match=r"^the input length exceeds the context length$"):
            _make_job(
                tiny.loaded,
                tiny.engine,
                outbox,
                PromptTokenizer(tiny.loaded.model),
                CompletionRequest(long_prompt, truncate=False),
            )
        prompts = PromptTokenizer(tiny.loaded.model)
        job, _ = _make_job(
            tiny.loaded, tiny.engine, outbox, prompts, CompletionRequest(long_prompt)
        )
        job.sampler.close()  # truncating (the default) accepts it
    finally:
        loop.close()
