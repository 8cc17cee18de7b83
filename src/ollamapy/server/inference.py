"""`/api/generate`, `/api/chat` and `/api/ps`: thin routes over the one completion path.

Each route validates its body at the edge, prepares the request (every 4xx raised before a
runner is touched), runs `completion.complete` with the prompt builder of its kind, and
encodes the typed events as Ollama's NDJSON (or one JSON object for `stream: false`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ollamapy.api.types import ChatRequest, GenerateRequest
from ollamapy.chat.events import Event, Final
from ollamapy.chat.messages import Prompt
from ollamapy.errors import OllamaError
from ollamapy.llm import Runner
from ollamapy.scheduler import LoadedModel
from ollamapy.server import loads, native, prompts
from ollamapy.server.completion import (
    Decoding,
    Prepared,
    check_format,
    complete,
    load,
    prepare,
)
from ollamapy.server.http import read_request, stream_events, unless_client_leaves
from ollamapy.server.resolved import ResolvedModel, resolve
from ollamapy.server.state import ServerState, state_of
from ollamapy.types import ModelName

Json = dict[str, Any]

# ----------------------------------------------------------------------------- generate


async def generate(request: Request) -> Response:
    body = await read_request(request, GenerateRequest)
    state = state_of(request)
    if loads.is_unload(bool(body.prompt or body.images or body.context), body.keep_alive):
        await loads.unload(state, body.model)
        return JSONResponse(native.generate_json(body.model, Final("unload"), with_context=False))
    prepared = await prepare_generate(state, body)
    if body.debug_render_only:
        prompt = await prompts.generate_prompt(prepared, body, None)
        return JSONResponse(_debug(body.model, prompt.text, len(body.images or [])))
    if not body.prompt and not body.images and not body.context:
        final = await load(state, prepared)
        return JSONResponse(native.generate_json(body.model, final, with_context=False))
    events = generate_events(state, prepared, body)
    if body.stream:
        return await stream_events(
            native.generate_stream(body.model, events, with_context=not body.raw), request
        )
    collected = native.collect_generate(body.model, events, with_context=not body.raw)
    return JSONResponse(await unless_client_leaves(request, collected))


async def prepare_generate(state: ServerState, body: GenerateRequest) -> Prepared:
    """Validate a generate request against its model; every 4xx is raised here, up front
    (in a worker thread: the first check of a model reads its GGUF header)."""
    Decoding.of(body)
    check_format(body.format)
    return await run_in_threadpool(_prepare_checked, state, body, prompts.check_generate)


def generate_events(
    state: ServerState, prepared: Prepared, body: GenerateRequest
) -> AsyncIterator[Event]:
    """The /api/generate completion as typed events (the OpenAI layer encodes them too)."""

    async def prompt_of(runner: Runner) -> Prompt:
        return await prompts.generate_prompt(prepared, body, runner)

    return complete(
        state,
        prepared,
        prompt_of,
        format=check_format(body.format),
        stream=body.stream,
        thinking=prompts.generate_thinking(prepared, body),
        decoding=Decoding.of(body),
    )


# ----------------------------------------------------------------------------- chat


async def chat(request: Request) -> Response:
    body = await read_request(request, ChatRequest)
    state = state_of(request)
    if loads.is_unload(bool(body.messages), body.keep_alive):
        await loads.unload(state, body.model)
        return JSONResponse(native.chat_json(body.model, Final("unload")))
    prepared = await prepare_chat(state, body)
    if body.debug_render_only:
        prompt = await prompts.chat_prompt(prepared, body, None)
        return JSONResponse(_debug(body.model, prompt.text, prompts.image_count(body)))
    if not body.messages:
        final = await load(state, prepared)
        return JSONResponse(native.chat_json(body.model, final))
    events = chat_events(state, prepared, body)
    if body.stream:
        return await stream_events(native.chat_stream(body.model, events), request)
    return JSONResponse(
        await unless_client_leaves(request, native.collect_chat(body.model, events))
    )


async def prepare_chat(state: ServerState, body: ChatRequest) -> Prepared:
    """Validate a chat request against its model and convert its conversation (images
    decoded) once; every 4xx is raised here, up front."""
    Decoding.of(body)
    check_format(body.format)
    return await run_in_threadpool(_prepare_chat, state, body)


async def relax_think(state: ServerState, body: ChatRequest) -> ChatRequest:
    """`body` without `think` when its model cannot think. Agents (Claude Code) ask every
    model for thinking; as Ollama relaxes it for its Anthropic layer, such a model answers
    without thinking instead of refusing with a 400. A model that cannot be resolved is
    left to `prepare_chat`, which says why."""
    if body.think in (None, False):
        return body
    return await run_in_threadpool(_relax_think, state, body)


def _relax_think(state: ServerState, body: ChatRequest) -> ChatRequest:
    try:
        model = resolve(state.store, ModelName.parse(body.model))
    except OllamaError:
        return body
    if prompts.can_think(model, prompts.template_of(model)):
        return body
    return body.model_copy(update={"think": None})


def _prepare_chat(state: ServerState, body: ChatRequest) -> Prepared:
    prepared = _prepare_checked(state, body, prompts.check_chat)
    conversation = prompts.chat_conversation(prepared.model, body)
    return dataclasses.replace(prepared, conversation=conversation)


def chat_events(
    state: ServerState, prepared: Prepared, body: ChatRequest, *, trace_budget: int | None = None
) -> AsyncIterator[Event]:
    """The /api/chat completion as typed events, tool calls parsed out; `trace_budget`
    (a dialect's, e.g. Anthropic's `thinking.budget_tokens`) caps the reasoning trace."""

    async def prompt_of(runner: Runner) -> Prompt:
        return await prompts.chat_prompt(prepared, body, runner)

    return complete(
        state,
        prepared,
        prompt_of,
        format=check_format(body.format),
        stream=body.stream,
        parser=prompts.tool_parser(prepared, body),
        thinking=prompts.chat_thinking(prepared, body),
        decoding=Decoding.of(body),
        tool_grammar=prompts.tool_grammar(prepared.model, body),
        trace_budget=trace_budget,
    )


async def chat_prompt_tokens(state: ServerState, prepared: Prepared, body: ChatRequest) -> int:
    """How many tokens the prompt of this chat request is: the very prompt `chat_events`
    would send (template, tools, think, fitted to num_ctx), counted by the runner's own
    tokenizer, hence the `prompt_eval_count` of the request evaluated."""
    async with state.scheduler.use(prepared.load, prepared.keep_alive) as entry:
        runner: Runner = entry.runner
        prompt = await prompts.chat_prompt(prepared, body, runner)
        if prompt.tokens is not None:
            return len(prompt.tokens)
        return len(await runner.tokenize(prompt.text))


BodyT = TypeVar("BodyT", GenerateRequest, ChatRequest)


def _prepare_checked(
    state: ServerState, body: BodyT, check: Callable[[ResolvedModel, BodyT], None]
) -> Prepared:
    prepared = prepare(state, body.model, body.options, body.keep_alive)
    check(prepared.model, body)
    return prepared


def _debug(model: str, prompt: str, images: int) -> Json:
    return {
        "model": model,
        "created_at": native.now_rfc3339(),
        "debug_info": {"rendered_template": prompt, "image_count": images},
    }


# ----------------------------------------------------------------------------- ps


async def ps(request: Request) -> Response:
    state = state_of(request)
    return JSONResponse({"models": [_ps_entry(state, e) for e in state.scheduler.loaded()]})


def _ps_entry(state: ServerState, entry: LoadedModel[Any]) -> Json:
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
