"""The one completion path every API layer runs: prepare -> render -> complete -> events.

`prepare` resolves the model and merges its options (every 4xx is raised there, before a
runner is touched). `complete` holds a runner from the scheduler for the whole stream,
asks the caller for the prompt with that runner at hand (token counting needs the model's
tokenizer), sends the runner the final text (and its tokens, when they were counted), and
turns the runner's chunks into typed `chat.events`: tool calls are parsed out on the way,
stats are measured here. Dialects encode these events at the edge.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import string
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ollamapy.api.types import ChatRequest, GenerateRequest
from ollamapy.chat.events import Delta, Event, Final
from ollamapy.chat.harmony import HarmonyParser
from ollamapy.chat.messages import Message, Prompt, ToolCall
from ollamapy.chat.prompt import Counted
from ollamapy.chat.thinking import ThinkingParser, ThinkingTags, prompt_opens_trace
from ollamapy.chat.tools import ToolCallParser
from ollamapy.errors import BadRequestError
from ollamapy.llm import CompletionDone, CompletionRequest, Runner, ToolCallGrammar, TraceBudget
from ollamapy.scheduler import ModelLoad
from ollamapy.server import loads
from ollamapy.server.models import details
from ollamapy.server.resolved import ResolvedModel, resolve
from ollamapy.server.state import ServerState
from ollamapy.types import ModelName, RunnerOptions, SamplingOptions, parse_duration
from ollamapy.types.logprobs import TokenLogprob, check_top_logprobs
from ollamapy.types.options import validate_options

Format = str | dict[str, Any] | None
PromptOf = Callable[[Runner], Awaitable[Prompt]]


@dataclass(frozen=True)
class Prepared:
    """A validated request, ready to run: the model, its options and its runner load."""

    model: ResolvedModel
    sampling: SamplingOptions
    load: ModelLoad
    keep_alive: float | None
    options: dict[str, Any] = field(default_factory=dict)
    conversation: tuple[Message, ...] = ()
    """A chat's messages (the model's, then the request's), converted once, images decoded."""


def prepare(state: ServerState, model_name: str, options: object, keep_alive: object) -> Prepared:
    """Resolve the model and merge its parameters with the request's options."""
    name = ModelName.parse(model_name)
    model = resolve(state.store, name)
    if model.model_path is None:
        raise BadRequestError(f"model '{model_name}' has no model layer")
    merged = {**validate_options(model.parameters), **validate_options(options)}
    merged.setdefault("num_ctx", state.config.context_length)
    load = ModelLoad(
        name=model.name.display,
        model_path=model.model_path,
        digest=str(model.digest),
        options=loads.fit_to_model(RunnerOptions.from_options(merged), model.model_path),
        adapters=model.adapters,
        projectors=model.projectors,
        num_parallel=state.config.num_parallel,  # 0: the scheduler picks 4 or 1 by memory
        size=model.manifest.total_size,
        details=details(model.config, model.config.base_name),
    )
    return Prepared(
        model=model,
        sampling=SamplingOptions.from_options(merged),
        load=load,
        keep_alive=None if keep_alive is None else parse_duration(keep_alive),
        options=merged,
    )


@dataclass(frozen=True)
class Decoding:
    """What a request asks of the runner besides sampling: logprobs, and whether a prompt
    that does not fit may be cut (`truncate`) and a full context shifted (`shift`)."""

    logprobs: bool = False
    top_logprobs: int = 0
    truncate: bool = True
    shift: bool = True

    @classmethod
    def of(cls, body: GenerateRequest | ChatRequest) -> Decoding:
        """The request's switches; `top_logprobs` outside 0-20 is Ollama's 400 (checked
        whether or not `logprobs` is set, as Ollama does)."""
        check_top_logprobs(body.top_logprobs)
        return cls(
            logprobs=body.logprobs,
            top_logprobs=body.top_logprobs,
            truncate=body.truncate is not False,
            shift=body.shift is not False,
        )


def check_format(value: object) -> Format:
    """`format`: absent, "json", or a JSON schema; anything else is Ollama's 400."""
    if value is None or value == "":
        return None
    if value == "json" or isinstance(value, dict):
        return value
    raise BadRequestError(f'invalid format: "{value}"; expected "json" or a JSON schema')


@dataclass
class Timing:
    """Wall-clock stats of one request, in nanoseconds."""

    started: int = field(default_factory=time.perf_counter_ns)
    load_duration: int = 0

    def total(self) -> int:
        return time.perf_counter_ns() - self.started


async def complete(
    state: ServerState,
    prepared: Prepared,
    prompt_of: PromptOf,
    *,
    format: Format,
    stream: bool,
    parser: ToolCallParser | None = None,
    thinking: ThinkingTags | HarmonyParser | None = None,
    decoding: Decoding = Decoding(),
    tool_grammar: ToolCallGrammar | None = None,
    trace_budget: int | None = None,
) -> AsyncIterator[Event]:
    """Hold a runner, render the prompt with it, and yield the completion's events.

    Unless `stream`, the runner sends the text in one piece at the end. With `thinking`
    tags (or gpt-oss's harmony parser), the reasoning trace is split off first; with a
    `parser`, tool calls are then taken out of the answer text as they complete; with a
    `tool_grammar`, the runner may only write tool calls. Logprobs ride on the delta of
    the chunk that brought them, even when a parser holds its text. A `trace_budget`
    caps the reasoning trace at that many tokens (thinking tags only; the runner closes the
    trace itself when it is spent).
    """
    timing = Timing()
    async with state.scheduler.use(prepared.load, prepared.keep_alive) as entry:
        timing.load_duration = time.perf_counter_ns() - timing.started
        runner: Runner = entry.runner
        prompt = await prompt_of(runner)
        request = CompletionRequest(
            prompt=prompt.text,
            # Counted tokens hold the `[img-N]` tags as text: with images the runner lays
            # the prompt out itself.
            tokens=None if prompt.tokens is None or prompt.images else tuple(prompt.tokens),
            images=tuple(base64.b64encode(image).decode() for image in prompt.images),
            options=prepared.sampling,
            format=format,
            stream=stream,
            logprobs=decoding.logprobs,
            top_logprobs=decoding.top_logprobs,
            truncate=decoding.truncate,
            shift=decoding.shift,
            tool_grammar=tool_grammar,
            trace_budget=_budget(trace_budget, thinking, prompt.text),
        )
        split = _Splitter(_trace_parser(thinking, prompt.text), parser)
        # Closed here, before the runner is released: a client that leaves mid-answer
        # stops the generation now, not when the stream is garbage-collected.
        async with contextlib.aclosing(runner.completion(request)) as chunks:
            async for chunk in chunks:
                if isinstance(chunk, CompletionDone):
                    tail = split.finish()
                    if tail is not None:
                        yield tail
                    yield final(chunk, timing)
                    return
                if chunk.content or chunk.logprobs:
                    delta = split.feed(chunk.content, chunk.logprobs)
                    if delta is not None:
                        yield delta


def _budget(
    tokens: int | None, thinking: ThinkingTags | HarmonyParser | None, prompt: str
) -> TraceBudget | None:
    """The runner's trace budget: the template's tags, and whether the prompt opened them."""
    if tokens is None or not isinstance(thinking, ThinkingTags):
        return None
    opened = prompt_opens_trace(thinking, prompt)
    return TraceBudget(tokens, thinking.opening, thinking.closing, opened)


def _trace_parser(
    thinking: ThinkingTags | HarmonyParser | None, prompt: str
) -> ThinkingParser | HarmonyParser | None:
    if isinstance(thinking, ThinkingTags):
        return ThinkingParser.for_prompt(thinking, prompt)
    return thinking


@dataclass
class _Splitter:
    """The output parsers in Ollama's order: the trace first, tool calls from the rest."""

    thinking: ThinkingParser | HarmonyParser | None
    tools: ToolCallParser | None

    def feed(self, text: str, logprobs: tuple[TokenLogprob, ...] = ()) -> Delta | None:
        thought, content = ("", text) if self.thinking is None else self.thinking.feed(text)
        content, calls = self._calls(content)
        return _delta(content, calls, thought, logprobs)

    def finish(self) -> Delta | None:
        """What the parsers held back for a tag or a call that never completed."""
        thought, content = "", ""
        calls: list[ToolCall] = []
        if isinstance(self.thinking, HarmonyParser):
            thought, content, calls = self.thinking.finish()
        elif self.thinking is not None:
            thought, content = self.thinking.finish()
            content, calls = self._calls(content)
        if self.tools is not None:
            rest, more = self.tools.finish()
            content, calls = content + rest, [*calls, *more]
        return _delta(content, calls, thought)

    def _calls(self, content: str) -> tuple[str, list[ToolCall]]:
        if not content or self.tools is None:
            return content, []
        return self.tools.feed(content)


def _delta(
    content: str,
    calls: list[ToolCall],
    thinking: str = "",
    logprobs: tuple[TokenLogprob, ...] = (),
) -> Delta | None:
    if not content and not calls and not thinking and not logprobs:
        return None
    calls_with_ids = tuple(_with_id(call) for call in calls)
    return Delta(content, thinking, calls_with_ids, logprobs)


def _with_id(call: ToolCall) -> ToolCall:
    """A fresh call id in Ollama's shape: `call_` and eight lowercase letters or digits."""
    alphabet = string.ascii_lowercase + string.digits
    call_id = "call_" + "".join(secrets.choice(alphabet) for _ in range(8))
    return ToolCall(call.name, call.arguments, call_id, call.index)


def final(done: CompletionDone, timing: Timing) -> Final:
    return Final(
        done_reason=done.done_reason,
        prompt_eval_count=done.prompt_eval_count,
        prompt_eval_duration=done.prompt_eval_duration,
        prompt_cached_count=done.prompt_cached_count,
        eval_count=done.eval_count,
        eval_duration=done.eval_duration,
        load_duration=timing.load_duration,
        total_duration=timing.total(),
        context=done.tokens,
        stop_sequence=done.stop_sequence,
    )


async def load(state: ServerState, prepared: Prepared) -> Final:
    """An empty prompt loads the model (unloading, with keep_alive 0, is `loads.unload`:
    it needs no prepared request, so any model, an embedding model too, can be stopped)."""
    timing = Timing()
    await state.scheduler.load(prepared.load, prepared.keep_alive)
    return Final("load", total_duration=timing.total())


def tokenizer_of(runner: Runner) -> Callable[[str], Counted]:
    """The runner's prompt tokenizer for code running in a worker thread: each call is a
    round trip to the runner, made on the event loop."""
    loop = asyncio.get_running_loop()

    def tokenize(text: str) -> Counted:
        got = asyncio.run_coroutine_threadsafe(runner.tokenize_prompt(text), loop).result()
        return Counted(got.tokens, got.cut_offsets, got.cut_counts)

    return tokenize
