"""`/api/generate`, `/api/chat` and `/api/ps`: prompts in, streamed tokens out.

The route validates at the edge, resolves the model, merges options (model parameters,
then request options), renders the prompt, holds a runner from the scheduler for the
duration of the stream, and turns runner chunks into Ollama's NDJSON objects with every
stat measured in nanoseconds.
"""

from __future__ import annotations

import math
import secrets
import string
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ollamapy import tools
from ollamapy.api.types import ChatRequest, GenerateRequest
from ollamapy.config import Config
from ollamapy.errors import BadRequestError
from ollamapy.llm import ProcessRunner, RunnerSpec, start_runner
from ollamapy.runner.protocol import CompletionDone, CompletionRequest
from ollamapy.scheduler import LoadedModel, ModelLoad, Scheduler
from ollamapy.scheduler.memory import GGUFEstimator, probe_memory
from ollamapy.server import loads, prompts
from ollamapy.server.http import aclose, read_request, stream_events
from ollamapy.server.models import details
from ollamapy.server.resolved import ResolvedModel, resolve
from ollamapy.server.state import ServerState, state_of
from ollamapy.types import ModelName, RunnerOptions, SamplingOptions, parse_duration
from ollamapy.types.options import validate_options

Event = dict[str, Any]


def runner_factory(config: Config) -> Callable[[ModelLoad], Awaitable[ProcessRunner]]:
    """Start a llama.cpp runner process for a load (separate so tests can wrap it)."""

    async def factory(load: ModelLoad) -> ProcessRunner:
        spec = RunnerSpec(
            model_path=load.model_path,
            adapters=load.adapters,
            options=load.options,
            num_parallel=load.num_parallel,
            flash_attention=config.flash_attention or None,
            kv_cache_type=config.kv_cache_type or None,
            verbose=config.debug,
        )
        return await start_runner(spec, load_timeout=config.load_timeout)

    return factory


def default_scheduler(
    config: Config,
    factory: Callable[[ModelLoad], Awaitable[ProcessRunner]] | None = None,
) -> Scheduler[ProcessRunner]:
    """The production scheduler: runner processes on llama.cpp, fitted to free memory."""
    return Scheduler(
        factory or runner_factory(config),
        default_keep_alive=config.keep_alive,
        max_loaded=config.max_loaded_models,
        max_queue=config.max_queue,
        estimator=GGUFEstimator(config.kv_cache_type),
        memory=probe_memory,
    )


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


# ----------------------------------------------------------------------------- options


@dataclass(frozen=True)
class Prepared:
    """A validated request, ready to run: the model, its options and its runner load."""

    model: ResolvedModel
    sampling: SamplingOptions
    load: ModelLoad
    keep_alive: float | None
    options: dict[str, Any] = field(default_factory=dict)


def prepare(state: ServerState, model_name: str, options: object, keep_alive: object) -> Prepared:
    """Resolve the model and merge its parameters with the request's options."""
    name = ModelName.parse(model_name)
    model = resolve(state.store, name)
    if model.model_path is None:
        raise BadRequestError(f"model '{model_name}' has no model layer")
    merged = {**validate_options(model.parameters), **validate_options(options)}
    merged.setdefault("num_ctx", state.config.context_length)
    runner_options = loads.fit_to_model(RunnerOptions.from_options(merged), model.model_path)
    load = ModelLoad(
        name=model.name.display,
        model_path=model.model_path,
        digest=str(model.digest),
        options=runner_options,
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


def check_format(value: object) -> object:
    if value is None or value == "" or isinstance(value, dict):
        return value or None
    if value == "json":
        return value
    raise BadRequestError(f'invalid format: "{value}"; expected "json" or a JSON schema')


# ----------------------------------------------------------------------------- streaming


@dataclass
class Timing:
    """Wall-clock stats of one request, in nanoseconds."""

    started: int = field(default_factory=time.perf_counter_ns)
    load_duration: int = 0

    def total(self) -> int:
        return time.perf_counter_ns() - self.started


async def run_completion(
    state: ServerState,
    prepared: Prepared,
    render: Callable[[ProcessRunner], Awaitable[str]],
    request_format: str | dict[str, Any] | None,
    on_chunk: Callable[[str], Event],
    on_done: Callable[[CompletionDone, Timing], Event],
    *,
    stream: bool,
) -> AsyncIterator[Event]:
    """Hold a runner, render the prompt with it, and yield Ollama events; unless
    `stream`, the runner sends the text in one piece at the end."""
    timing = Timing()
    async with state.scheduler.use(prepared.load, prepared.keep_alive) as entry:
        timing.load_duration = time.perf_counter_ns() - timing.started
        runner: ProcessRunner = entry.runner
        prompt = await render(runner)
        request = CompletionRequest(
            prompt=prompt, options=prepared.sampling, format=request_format, stream=stream
        )
        async for chunk in runner.completion(request):
            if isinstance(chunk, CompletionDone):
                yield on_done(chunk, timing)
                return
            if chunk.content:
                yield on_chunk(chunk.content)


def stats(done: CompletionDone, timing: Timing) -> Event:
    return {
        "done_reason": done.done_reason,
        "total_duration": timing.total(),
        "load_duration": timing.load_duration,
        "prompt_eval_count": done.prompt_eval_count,
        "prompt_eval_duration": done.prompt_eval_duration,
        "eval_count": done.eval_count,
        "eval_duration": done.eval_duration,
    }


async def load_or_unload(
    state: ServerState, prepared: Prepared, make: Callable[[str], Event]
) -> Event:
    """An empty prompt loads the model; with keep_alive 0 it unloads it."""
    if prepared.keep_alive == 0:
        await state.scheduler.unload(prepared.load.model_path)
        return make("unload")
    await state.scheduler.load(prepared.load, prepared.keep_alive)
    return make("load")


async def collect_generate(events: AsyncIterator[Event]) -> Event:
    """For `stream: false`: the final event with the streamed response joined."""
    text: list[str] = []
    last: Event = {}
    async for event in events:
        last = event
        text.append(event["response"])
    last["response"] = "".join(text)
    return last


# ----------------------------------------------------------------------------- generate


async def generate(request: Request) -> Response:
    body = await read_request(request, GenerateRequest)
    state = state_of(request)
    if loads.is_unload(bool(body.prompt or body.images or body.context), body.keep_alive):
        await loads.unload(state, body.model)
        return JSONResponse({**_generate_event(body, True), "done_reason": "unload"})
    prepared = await prepare_generate(state, body)
    if body.debug_render_only:
        prompt = await prompts.render_generate(prepared, body, detokenize=None)
        return JSONResponse(_debug(body.model, prompt, len(body.images or [])))
    if not body.prompt and not body.images and not body.context:
        return JSONResponse(
            await load_or_unload(
                state, prepared, lambda r: {**_generate_event(body, True), "done_reason": r}
            )
        )
    events = generate_events(state, prepared, body)
    if body.stream:
        return await stream_events(events)
    return JSONResponse(await collect_generate(events))


async def prepare_generate(state: ServerState, body: GenerateRequest) -> Prepared:
    """Validate a generate request against its model; every 4xx is raised here, up front
    (in a worker thread: the first check of a model reads its GGUF header)."""
    check_format(body.format)
    return await run_in_threadpool(_prepare_checked, state, body, prompts.check_generate)


def generate_events(
    state: ServerState, prepared: Prepared, body: GenerateRequest
) -> AsyncIterator[Event]:
    """The native /api/generate event stream (the OpenAI layer translates these)."""

    async def render(runner: ProcessRunner) -> str:
        return await prompts.render_generate(prepared, body, detokenize=runner.detokenize)

    def on_done(done: CompletionDone, timing: Timing) -> Event:
        final = {**_generate_event(body, True), **stats(done, timing)}
        if not body.raw:
            final["context"] = done.tokens
        return _ordered_generate(final)

    return run_completion(
        state,
        prepared,
        render,
        body.format,
        lambda text: {**_generate_event(body, False), "response": text},
        on_done,
        stream=body.stream,
    )


def _generate_event(body: GenerateRequest, done: bool) -> Event:
    return {"model": body.model, "created_at": now_rfc3339(), "response": "", "done": done}


def _ordered_generate(event: Event) -> Event:
    order = ("model", "created_at", "response", "done", "done_reason", "context")
    head = {key: event[key] for key in order if key in event}
    return {**head, **{k: v for k, v in event.items() if k not in head}}


def _debug(model: str, prompt: str, images: int) -> Event:
    return {
        "model": model,
        "created_at": now_rfc3339(),
        "debug_info": {"rendered_template": prompt, "image_count": images},
    }


# ----------------------------------------------------------------------------- chat


async def chat(request: Request) -> Response:
    body = await read_request(request, ChatRequest)
    state = state_of(request)
    if loads.is_unload(bool(body.messages), body.keep_alive):
        await loads.unload(state, body.model)
        return JSONResponse({**_chat_event(body, True), "done_reason": "unload"})
    prepared = await prepare_chat(state, body)
    if body.debug_render_only:
        prompt = await prompts.render_chat(prepared, body, count_tokens=None)
        return JSONResponse(_debug(body.model, prompt, prompts.image_count(body)))
    if not body.messages:
        return JSONResponse(
            await load_or_unload(
                state, prepared, lambda r: {**_chat_event(body, True), "done_reason": r}
            )
        )
    events = chat_events(state, prepared, body)
    if body.stream:
        return await stream_events(events)
    return JSONResponse(await collect_chat(events))


async def prepare_chat(state: ServerState, body: ChatRequest) -> Prepared:
    """Validate a chat request against its model; every 4xx is raised here, up front."""
    check_format(body.format)
    return await run_in_threadpool(_prepare_checked, state, body, prompts.check_chat)


BodyT = TypeVar("BodyT", GenerateRequest, ChatRequest)


def _prepare_checked(
    state: ServerState, body: BodyT, check: Callable[[ResolvedModel, BodyT], None]
) -> Prepared:
    prepared = prepare(state, body.model, body.options, body.keep_alive)
    check(prepared.model, body)
    return prepared


def chat_events(state: ServerState, prepared: Prepared, body: ChatRequest) -> AsyncIterator[Event]:
    """The native /api/chat event stream (the OpenAI layer translates these)."""

    async def render(runner: ProcessRunner) -> str:
        return await prompts.render_chat(prepared, body, count_tokens=runner.tokenize)

    def on_done(done: CompletionDone, timing: Timing) -> Event:
        return {**_chat_event(body, True), **stats(done, timing)}

    events = run_completion(
        state,
        prepared,
        render,
        body.format,
        lambda text: _chat_event(body, False, text),
        on_done,
        stream=body.stream,
    )
    if not body.tools:
        return events
    parser = tools.ToolCallParser.for_template(prompts.template_of(prepared.model), body.tools)
    return _with_tool_calls(events, parser, body)


async def _with_tool_calls(
    events: AsyncIterator[Event], parser: tools.ToolCallParser, body: ChatRequest
) -> AsyncIterator[Event]:
    """Run the chat stream through the tool-call parser (only when the request has tools).

    Content the parser releases goes out as usual; each batch of calls goes out as its own
    event with empty content, as Ollama sends it. What the parser still holds at the end is
    released (or dropped) by `finish` and rides on the final event.
    """
    try:
        async for event in events:
            message = event["message"]
            if event["done"]:
                content, calls = parser.finish()
            else:
                content, calls = parser.feed(message["content"])
            if content and not event["done"]:
                yield _chat_event(body, False, content)
            if calls:
                yield _chat_event(body, False, calls=calls)
            if event["done"]:
                message["content"] = content
                yield event
    finally:
        await aclose(events)


async def collect_chat(events: AsyncIterator[Event]) -> Event:
    """For `stream: false`: the final event with all content joined and every tool call."""
    text: list[str] = []
    calls: list[Event] = []
    last: Event = {}
    async for event in events:
        last = event
        text.append(event["message"]["content"])
        calls.extend(event["message"].get("tool_calls") or ())
    last["message"]["content"] = "".join(text)
    if calls:
        last["message"]["tool_calls"] = calls
    return last


def _chat_event(
    body: ChatRequest,
    done: bool,
    content: str = "",
    calls: list[tools.ParsedToolCall] | None = None,
) -> Event:
    message: Event = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = [call.to_json(_tool_call_id()) for call in calls]
    return {"model": body.model, "created_at": now_rfc3339(), "message": message, "done": done}


def _tool_call_id() -> str:
    """A fresh call id in Ollama's shape: `call_` and eight lowercase letters or digits."""
    alphabet = string.ascii_lowercase + string.digits
    return "call_" + "".join(secrets.choice(alphabet) for _ in range(8))


# ----------------------------------------------------------------------------- ps


async def ps(request: Request) -> Response:
    state = state_of(request)
    return JSONResponse({"models": [_ps_entry(state, e) for e in state.scheduler.loaded()]})


def _ps_entry(state: ServerState, entry: LoadedModel[Any]) -> Event:
    load = entry.load
    expires = state.scheduler.wall_clock_expiry(entry)
    return {
        "name": load.name,
        "model": load.name,
        "size": entry.memory.total or load.size,  # Ollama reports the memory it planned for
        "digest": load.digest.removeprefix("sha256:"),
        "details": load.details,
        "expires_at": _expiry_text(expires),
        "size_vram": entry.size_vram,
        "context_length": load.options.num_ctx,  # per sequence, as a request sees it
    }


def _expiry_text(timestamp: float) -> str:
    if math.isinf(timestamp):
        return "2318-01-01T00:00:00Z"  # Ollama's far-future stand-in for "forever"
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


ROUTES = [
    Route("/api/generate", generate, methods=["POST"]),
    Route("/api/chat", chat, methods=["POST"]),
    Route("/api/ps", ps, methods=["GET"]),
]
