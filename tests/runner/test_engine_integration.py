"""The engine on the real SmolLM2 model, in-process (no HTTP): sampling, stops, stats,
grammar, parallel slots, prefix cache, cancellation and context shift."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest

from ollamapy.runner.app import _make_job
from ollamapy.runner.channel import Outbox
from ollamapy.runner.engine import Engine, Job
from ollamapy.runner.grammar import format_to_grammar
from ollamapy.runner.loader import LoadedModel
from ollamapy.runner.native import SamplerChain
from ollamapy.runner.protocol import (
    CompletionChunk,
    CompletionDone,
    CompletionError,
    CompletionEvent,
    CompletionRequest,
    TraceBudget,
)
from ollamapy.runner.sampling import plan_sampler_chain
from ollamapy.runner.tokens import PromptTokenizer
from ollamapy.types.options import SamplingOptions
from tests.runner.engines import running_engine

pytestmark = pytest.mark.integration

TIMEOUT = 120.0


def chat(question: str) -> str:
    return f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


@dataclass
class Result:
    chunks: list[str] = field(default_factory=list)
    done: CompletionDone | None = None
    error: str | None = None

    @property
    def text(self) -> str:
        return "".join(self.chunks)


class Harness:
    """Submits jobs to an engine and collects their events synchronously."""

    def __init__(self, loaded: LoadedModel, engine: Engine) -> None:
        self.loaded, self.engine = loaded, engine

    def submit(
        self, prompt: str, fmt: Any = None, *, prefilter: bool = True, **options: Any
    ) -> tuple[Job, queue.Queue[CompletionEvent]]:
        model = self.loaded.model
        opts = SamplingOptions(**options)
        tokens = model.tokenize(prompt, add_special=True)
        plan = plan_sampler_chain(
            opts, n_vocab=model.n_vocab, n_ctx=self.engine.n_ctx, grammar=format_to_grammar(fmt)
        )
        if not prefilter and plan[0].name == "top_k" and plan[1].name == "penalties":
            plan = plan[1:]
        events: queue.Queue[CompletionEvent] = queue.Queue()
        job = Job(tokens, opts, SamplerChain(model, plan, tokens), events.put)
        self.engine.submit(job)
        return job, events

    @staticmethod
    def collect(events: queue.Queue[CompletionEvent]) -> Result:
        result = Result()
        while True:
            event = events.get(timeout=TIMEOUT)
            if isinstance(event, CompletionChunk):
                result.chunks.append(event.content)
            elif isinstance(event, CompletionDone):
                result.done = event
                return result
            else:
                assert isinstance(event, CompletionError)
                result.error = event.error
                return result

    def run(
        self, prompt: str, fmt: Any = None, *, prefilter: bool = True, **options: Any
    ) -> Result:
        return self.collect(self.submit(prompt, fmt, prefilter=prefilter, **options)[1])


def _harness(model_path: Path, **launch: Any) -> Iterator[Harness]:
    with running_engine(model_path, **launch) as (loaded, engine):
        yield Harness(loaded, engine)


@pytest.fixture(scope="module")
def harness(smollm2: Path) -> Iterator[Harness]:
    yield from _harness(smollm2, num_ctx=512, parallel=2)


@pytest.fixture(scope="module")
def tiny(smollm2: Path) -> Iterator[Harness]:
    """The smallest context llama.cpp allows, to exercise context shift."""
    yield from _harness(smollm2, num_ctx=64, parallel=1, num_batch=64)


GREEDY: dict[str, Any] = {"temperature": 0.0, "num_predict": 24}


def test_greedy_is_reproducible(harness: Harness) -> None:
    first = harness.run(chat("What is the capital of France?"), **GREEDY)
    second = harness.run(chat("What is the capital of France?"), **GREEDY)
    assert first.error is None and first.text
    assert first.text == second.text
    assert first.done is not None and second.done is not None
    assert first.done.tokens == second.done.tokens


def test_same_seed_same_sample(harness: Harness) -> None:
    opts: dict[str, Any] = {"temperature": 1.0, "seed": 1234, "num_predict": 24}
    first = harness.run(chat("Tell me a joke."), **opts)
    second = harness.run(chat("Tell me a joke."), **opts)
    assert first.text and first.text == second.text


@pytest.mark.parametrize(
    "options",
    [
        {"temperature": 0.0, "repeat_penalty": 1.5, "repeat_last_n": 16},
        {"seed": 7, "temperature": 1.5, "repeat_penalty": 1.3, "presence_penalty": 0.5},
    ],
)
def test_penalty_prefilter_is_exact(harness: Harness, options: dict[str, Any]) -> None:
    prompt = chat("List ten animals, one per line.")
    fast = harness.run(prompt, num_predict=48, **options)
    slow = harness.run(prompt, num_predict=48, prefilter=False, **options)
    assert fast.done is not None and slow.done is not None
    assert fast.done.tokens == slow.done.tokens


def test_num_predict_and_stats(harness: Harness) -> None:
    result = harness.run(chat("Count to twenty."), temperature=0.0, num_predict=5)
    done = result.done
    assert done is not None
    assert (done.done_reason, done.eval_count) == ("length", 5)
    assert done.prompt_eval_count > 0 and done.prompt_eval_duration > 0
    assert done.eval_duration > 0
    prompt = harness.loaded.model.tokenize(chat("Count to twenty."), add_special=True)
    assert done.tokens[: len(prompt)] == prompt and len(done.tokens) == len(prompt) + 5
    assert harness.loaded.model.detokenize(done.tokens[len(prompt) :]) == result.text


def test_stop_string_is_exact(harness: Harness) -> None:
    base = harness.run(chat("Count from 1 to 10, separated by commas."), **GREEDY)
    assert base.done is not None and len(base.text) > 6
    stop = base.text[3:6]
    stopped = harness.run(chat("Count from 1 to 10, separated by commas."), stop=[stop], **GREEDY)
    assert stopped.done is not None and stopped.done.done_reason == "stop"
    assert stopped.text == base.text[: base.text.index(stop)]
    assert stopped.done.stop_sequence == stop  # which stop string ended it
    assert base.done.stop_sequence is None  # an end-of-generation token is no stop string


def test_a_spent_trace_budget_makes_the_engine_close_the_trace(harness: Harness) -> None:
    """With the trace opened by the prompt and a budget of 5, the engine writes the
    closing tag itself after 5 tokens of trace; the model then goes on with its answer."""
    model = harness.loaded.model
    prompt = chat("Why is the sky blue?") + "<think>\n"
    budget = TraceBudget(5, "<think>", "</think>", opened=True)
    options = SamplingOptions(temperature=0.0, num_predict=24)
    request = CompletionRequest(prompt, options, trace_budget=budget)
    loop = asyncio.new_event_loop()
    try:  # the runner's own request -> job step
        job, _ = _make_job(
            harness.loaded, harness.engine, Outbox(loop), PromptTokenizer(model), request
        )
        forced, _ = _make_job(
            harness.loaded,
            harness.engine,
            Outbox(loop),
            PromptTokenizer(model),
            replace(request, format="json"),
        )
    finally:
        loop.close()
    forced.sampler.close()
    assert forced.trace is None  # a grammar decides the output: no budget to enforce
    tokens = job.prompt
    events: queue.Queue[CompletionEvent] = queue.Queue()
    job.emit = events.put
    harness.engine.submit(job)
    result = harness.collect(events)
    assert result.done is not None, result.error
    generated = result.done.tokens[len(tokens) :]
    close = list(job.trace_close)
    assert generated[5 : 5 + len(close)] == close, model.detokenize(generated)
    assert "</think>" in result.text and result.done.eval_count > 5 + len(close)
    unbounded = harness.run(prompt, temperature=0.0, num_predict=24)
    assert unbounded.text.startswith(result.text.partition("</think>")[0])


SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}


def test_json_schema_format(harness: Harness) -> None:
    result = harness.run(
        chat("Describe a person as JSON with name and age."),
        fmt=SCHEMA,
        temperature=0.0,
        num_predict=64,
    )
    assert result.done is not None and result.done.done_reason == "stop", result.text
    jsonschema.validate(json.loads(result.text), SCHEMA)


def test_json_format(harness: Harness) -> None:
    result = harness.run(chat("Give me a JSON object."), fmt="json", temperature=0, num_predict=64)
    assert result.done is not None and result.done.done_reason == "stop", result.text
    assert isinstance(json.loads(result.text), dict)


def test_parallel_matches_alone(harness: Harness) -> None:
    questions = [chat("Name three fruits."), chat("Why is the sky blue?")]
    alone = [harness.run(q, **GREEDY).text for q in questions]
    pending = [harness.submit(q, **GREEDY)[1] for q in questions]
    together = [Harness.collect(events).text for events in pending]
    assert together == alone


def evaluated(done: CompletionDone | None) -> int:
    """Prompt tokens the engine actually evaluated (the rest came from the KV cache)."""
    assert done is not None
    return done.prompt_eval_count - done.prompt_cached_count


def test_prefix_cache_reuses_shared_prefix(harness: Harness) -> None:
    system = "<|im_start|>system\nYou are a terse assistant who answers in one line.<|im_end|>\n"
    first = harness.run(system + chat("What is 2+2?"), temperature=0, num_predict=4)
    second = harness.run(system + chat("What is 3+3?"), temperature=0, num_predict=4)
    assert evaluated(second.done) < evaluated(first.done)
    again = harness.run(system + chat("What is 3+3?"), temperature=0, num_predict=4)
    assert evaluated(again.done) == 1
    assert again.text == second.text


def test_a_cached_prompt_still_counts_every_prompt_token(harness: Harness) -> None:
    """Like Ollama's runner, `prompt_eval_count` is the whole prompt even when most of it
    comes from the KV cache (clients bill by it); the reused part is reported beside it."""
    prompt = chat("[whole-count] Name the largest planet.")
    whole = prompt_tokens(harness, prompt)
    first = harness.run(prompt, temperature=0, num_predict=2)
    second = harness.run(prompt, temperature=0, num_predict=2)
    assert first.done is not None and second.done is not None
    assert first.done.prompt_eval_count == second.done.prompt_eval_count == whole
    assert first.done.prompt_cached_count < whole // 2  # at most a chat header was cached
    assert second.done.prompt_cached_count == whole - 1  # the last token is evaluated again


SYSTEM_TEXT = (
    "You are the ship's assistant on a long voyage. Answer every question in one short line, "
    "mention the weather when it matters, never invent facts, and keep a calm tone."
)


def system_prompt(tag: str) -> str:
    """A system turn of about 50 tokens that no other test's prompt starts with."""
    return f"<|im_start|>system\n[{tag}] {SYSTEM_TEXT}<|im_end|>\n"


@pytest.fixture(scope="module")
def solo(smollm2: Path) -> Iterator[Harness]:
    """One slot, so no prompt can ever be served from another slot's cache."""
    yield from _harness(smollm2, num_ctx=512, parallel=1)


def solo_text(solo: Harness, prompt: str) -> str:
    solo.run(chat("Unrelated warm-up that shares nothing."), temperature=0, num_predict=1)
    return solo.run(prompt, **GREEDY).text


def prompt_tokens(harness: Harness, prompt: str) -> int:
    return len(harness.loaded.model.tokenize(prompt, add_special=True))


def test_a_busy_slots_cached_prefix_is_copied_not_evaluated_again(
    harness: Harness, solo: Harness
) -> None:
    system = system_prompt("busy-copy")
    first, events = harness.submit(
        system + chat("Describe the sea at night."), temperature=0, num_predict=200
    )
    assert isinstance(events.get(timeout=TIMEOUT), CompletionChunk)  # cached, generating
    second = harness.run(system + chat("What is 3+3?"), **GREEDY)
    while not events.empty():  # the first job was generating all along
        assert isinstance(events.get_nowait(), CompletionChunk)
    first.cancel()
    assert second.done is not None
    shared = prompt_tokens(harness, system + "<|im_start|>user\n")
    assert second.done.prompt_eval_count == prompt_tokens(harness, system + chat("What is 3+3?"))
    assert second.done.prompt_cached_count >= shared - 1
    assert evaluated(second.done) <= second.done.prompt_eval_count - shared + 1
    assert second.text == solo_text(solo, system + chat("What is 3+3?"))


def test_requests_arriving_together_evaluate_their_shared_prefix_once(
    harness: Harness, solo: Harness
) -> None:
    system = system_prompt("together")
    prompts = [system + chat("Name a fruit."), system + chat("Name a colour.")]
    pending = [harness.submit(prompt, **GREEDY)[1] for prompt in prompts]
    results = [Harness.collect(events) for events in pending]
    full = sum(prompt_tokens(harness, prompt) for prompt in prompts)
    assert sum(r.done.prompt_eval_count for r in results if r.done is not None) == full
    shared = prompt_tokens(harness, system + "<|im_start|>user\n")
    assert sum(evaluated(r.done) for r in results) <= full - shared + 2
    assert [r.text for r in results] == [solo_text(solo, prompt) for prompt in prompts]


def test_cancel_frees_the_slot(harness: Harness) -> None:
    jobs = [harness.submit(chat(f"Write a long essay number {i}."), num_predict=-1) for i in (1, 2)]
    for job, events in jobs:
        assert isinstance(events.get(timeout=TIMEOUT), CompletionChunk)
        job.cancel()
    # Both slots must come free: a new request completes.
    result = harness.run(chat("Say hi."), temperature=0, num_predict=3)
    assert result.done is not None and result.done.eval_count == 3
    for _, events in jobs:  # nothing final is sent to a cancelled job
        while not events.empty():
            assert isinstance(events.get_nowait(), CompletionChunk)


def test_context_shift_keeps_generating(tiny: Harness) -> None:
    n_ctx = tiny.engine.n_ctx  # llama.cpp rounds the requested 64 up (to 256)
    prompt_len = len(tiny.loaded.model.tokenize(chat("Tell me a story."), add_special=True))
    wanted = n_ctx - prompt_len + 16  # only reachable by shifting the context
    result = tiny.run(chat("Tell me a story."), temperature=0, num_predict=wanted, num_keep=4)
    assert result.error is None and result.done is not None
    assert (result.done.done_reason, result.done.eval_count) == ("length", wanted)


def test_fill_context_stops_at_the_limit(tiny: Harness) -> None:
    prompt_len = len(tiny.loaded.model.tokenize(chat("Tell a tale."), add_special=True))
    result = tiny.run(chat("Tell a tale."), temperature=0, num_predict=-2, repeat_penalty=1.0)
    assert result.done is not None and result.done.done_reason == "length"
    # the last token is sampled but never stored
    assert prompt_len + result.done.eval_count == tiny.engine.n_ctx + 1


def test_long_prompt_is_truncated(tiny: Harness) -> None:
    prompt = chat("word " * 400)
    result = tiny.run(prompt, temperature=0, num_predict=3)
    assert result.error is None and result.done is not None
    assert result.done.prompt_eval_count <= tiny.engine.n_ctx


def test_threads_do_not_deadlock_on_many_jobs(harness: Harness) -> None:
    results: list[Result] = []

    def worker(i: int) -> None:
        results.append(harness.run(chat(f"Say the number {i}."), temperature=0, num_predict=4))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert len(results) == 5
    assert all(r.done is not None and r.done.eval_count == 4 for r in results)


def test_multibyte_characters_are_never_split(harness: Harness) -> None:
    result = harness.run(chat("Reply with three emojis."), temperature=0, num_predict=12)
    assert result.done is not None
    emojis = [ch for ch in result.text if ord(ch) > 0xFFFF]
    assert emojis and "\ufffd" not in result.text
    assert result.done.eval_count > len(emojis)  # so some emoji spanned several tokens
    for chunk in result.chunks:
        chunk.encode("utf-8")  # every chunk is whole text on its own
