"""The runner's routes: health, info, tokenize, detokenize, completion and embedding.

Errors before a stream starts are JSON `{"error": ...}` with a 4xx/5xx status; an error
after a `/completion` stream started is its last NDJSON line, `{"error": ...}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ollamapy.errors import BadRequestError, OllamaError
from ollamapy.runner import protocol as p
from ollamapy.runner.channel import Channel, EventStream, Outbox, finished_before_disconnect
from ollamapy.runner.engine import Engine, EngineClosedError, Job
from ollamapy.runner.grammar import format_to_grammar, tool_calls_to_grammar
from ollamapy.runner.launch import LaunchArgs
from ollamapy.runner.loader import LoadedModel
from ollamapy.runner.native import NativeError, SamplerChain
from ollamapy.runner.sampling import plan_sampler_chain
from ollamapy.runner.textstream import TraceLimit
from ollamapy.runner.tokens import PromptTokenizer
from ollamapy.runner.vision import ImagePrompt, is_image

log = logging.getLogger(__name__)

INPUT_TOO_LONG = "the input length exceeds the context length"
"""Ollama's 400 for a prompt longer than the context when `truncate` is false."""


@dataclass
class RunnerState:
    """What the HTTP handlers see: loading progress, then the loaded model and engine."""

    args: LaunchArgs
    progress: float = 0.0
    loaded: LoadedModel | None = None
    engine: Engine | None = None
    outbox: Outbox | None = None
    prompts: PromptTokenizer | None = None
    """Tokenizes completion prompts, reusing recent prompts' tokens (made with the engine)."""
    error: str | None = None
    info: p.RunnerInfo | None = field(default=None)
    embed_thread: ThreadPoolExecutor = field(default_factory=lambda: _one_thread("embed"))
    """Where every embedding decode runs (see `_one_thread`)."""
    vision_thread: ThreadPoolExecutor = field(default_factory=lambda: _one_thread("vision"))
    """Where images are decoded and encoded (mtmd's context serves one thread at a time)."""

    def require(self) -> tuple[LoadedModel, Engine]:
        if self.loaded is None or self.engine is None:
            raise _NotReady()
        return self.loaded, self.engine


class _NotReady(OllamaError):
    status_code = 503

    def __init__(self) -> None:
        super().__init__("model is still loading")


# --------------------------------------------------------------------------- handlers


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _json_body(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError as exc:
        raise BadRequestError(f"invalid JSON body: {exc}") from exc


def build_app(state: RunnerState) -> Starlette:
    """The routes of a runner; each handler maps `OllamaError`s to `{"error": ...}`."""

    def guarded(handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            try:
                response: Response = await handler(request)
                return response
            except OllamaError as exc:
                return _error(exc.message, exc.status_code)

        return endpoint

    async def health(_: Request) -> Response:
        if state.engine is not None:
            return JSONResponse(p.Health("ok", 1.0).to_json())
        health = p.Health("error" if state.error else "loading", state.progress)
        return JSONResponse(health.to_json(), status_code=503)

    async def info(_: Request) -> Response:
        state.require()
        assert state.info is not None
        return JSONResponse(state.info.to_json())

    async def tokenize(request: Request) -> Response:
        loaded, _ = state.require()
        req = p.TokenizeRequest.from_json(await _json_body(request))
        if req.add_special and state.prompts is not None:  # a prompt the server is fitting
            tokens, offsets, counts = state.prompts.tokenize_with_cuts(req.content)
            return JSONResponse(p.TokenizeResponse(tokens, offsets, counts).to_json())
        tokens = loaded.model.tokenize(req.content, add_special=req.add_special)
        return JSONResponse(p.TokenizeResponse(tokens).to_json())

    async def detokenize(request: Request) -> Response:
        loaded, _ = state.require()
        req = p.DetokenizeRequest.from_json(await _json_body(request))
        bad = [t for t in req.tokens if not loaded.model.valid_token(t)]
        if bad:
            raise BadRequestError(f"invalid token id: {bad[0]}")
        return JSONResponse(p.DetokenizeResponse(loaded.model.detokenize(req.tokens)).to_json())

    async def completion(request: Request) -> Response:
        loaded, engine = state.require()
        req = p.CompletionRequest.from_json(await _json_body(request))
        assert state.outbox is not None and state.prompts is not None  # made with the engine
        layout, started = None, 0
        if req.images:
            started = time.perf_counter_ns()
            if loaded.vision is None:
                raise BadRequestError("this model does not support images")
            work = functools.partial(loaded.vision.prompt, req.prompt, req.images)
            try:
                layout = await asyncio.get_running_loop().run_in_executor(state.vision_thread, work)
            except NativeError as exc:
                return _error(str(exc), 500)
        job, events = _make_job(loaded, engine, state.outbox, state.prompts, req, layout)
        job.started_ns = started
        try:
            engine.submit(job)
        except EngineClosedError as exc:
            job.sampler.close()
            return _error(str(exc), 503)
        return EventStream(job, events)

    async def embedding(request: Request) -> Response:
        from ollamapy.runner import embed

        loaded, _ = state.require()
        req = p.EmbeddingRequest.from_json(await _json_body(request))
        stop = threading.Event()
        if loaded.embedder is not None:
            call = functools.partial(
                loaded.embedder.embed, req.content, truncate=req.truncate, stop=stop
            )
        else:
            call = functools.partial(
                embed.embed,
                loaded.model,
                loaded.context,
                req.content,
                truncate=req.truncate,
                enabled=loaded.args.embedding,
                stop=stop,
            )
        work = asyncio.get_running_loop().run_in_executor(state.embed_thread, call)
        if not await finished_before_disconnect(work, request.receive):
            stop.set()  # the decode under way ends; no further batch starts
            with contextlib.suppress(embed.EmbeddingStopped, NativeError, BadRequestError):
                await work
            return _error("client disconnected", 499)
        try:
            vectors, count = work.result()
        except NativeError as exc:
            return _error(str(exc), 500)
        return JSONResponse(p.EmbeddingResponse.from_vectors(vectors, count).to_json())

    async def threads(request: Request) -> Response:
        loaded, _ = state.require()
        if request.method == "POST":
            req = p.ThreadsRequest.from_json(await _json_body(request))
            _share_threads(loaded, req.n_threads)
        return JSONResponse(_threads_reply(loaded).to_json())

    routes = [
        Route(p.HEALTH_PATH, health, methods=["GET"]),
        Route(p.INFO_PATH, guarded(info), methods=["GET"]),
        Route(p.TOKENIZE_PATH, guarded(tokenize), methods=["POST"]),
        Route(p.DETOKENIZE_PATH, guarded(detokenize), methods=["POST"]),
        Route(p.COMPLETION_PATH, guarded(completion), methods=["POST"]),
        Route(p.EMBEDDING_PATH, guarded(embedding), methods=["POST"]),
        Route(p.THREADS_PATH, guarded(threads), methods=["GET", "POST"]),
    ]
    return Starlette(routes=routes)


def _share_threads(loaded: LoadedModel, n_threads: int) -> None:
    """Decode with `n_threads` (at most the `--threads` the runner was started with) from
    each context's next decode on: the engine thread and the embedding thread apply it
    themselves between decodes, so a decode in progress is never disturbed."""
    if loaded.args.num_thread > 0:
        n_threads = min(n_threads, loaded.args.num_thread)
    loaded.context.request_threads(n_threads)
    if loaded.embedder is not None:
        loaded.embedder.request_threads(n_threads)


def _threads_reply(loaded: LoadedModel) -> p.ThreadsReply:
    context = loaded.context
    return p.ThreadsReply(context.threads_requested, context.n_threads)


def _one_thread(name: str) -> ThreadPoolExecutor:
    """An executor with a single, long-lived thread.

    Each thread that calls `llama_decode` gets its own OpenMP team, whose idle workers
    spin for milliseconds after each decode. Decodes that hop between the threads of a
    pool (`asyncio.to_thread` takes them in turn once it has several, e.g. after two
    requests overlapped) compete with the last team's spinning workers: 10-20% slower on
    2 cores, and half speed when the spin is shortened (`GOMP_SPINCOUNT`).
    """
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ollamapy-{name}")


def _make_job(
    loaded: LoadedModel,
    engine: Engine,
    outbox: Outbox,
    prompts: PromptTokenizer,
    req: p.CompletionRequest,
    layout: ImagePrompt | None = None,
) -> tuple[Job, Channel]:
    """Tokenize, build the sampler chain (bad grammars fail here, as a 400) and the job.

    A prompt with images comes laid out by the projector (`layout`): its tokens hold the
    image positions, which count in the context like any token."""
    model = loaded.model
    if layout is not None:
        tokens = layout.tokens
        _check_images_fit(layout, engine.n_ctx, loaded.context.n_batch)
    elif req.tokens is not None:
        tokens = list(req.tokens)
        if any(not 0 <= token < model.n_vocab for token in tokens):
            raise BadRequestError("a prompt token is outside the model's vocabulary")
    else:
        tokens = prompts.tokenize(req.prompt)
    if not tokens:
        raise BadRequestError("the prompt is empty")
    if not req.truncate and len(tokens) > engine.n_ctx:
        raise BadRequestError(INPUT_TOO_LONG)
    if req.tool_grammar is not None:
        grammar: str | None = tool_calls_to_grammar(req.tool_grammar)
    else:
        grammar = format_to_grammar(req.format)
    plan = plan_sampler_chain(
        req.options, n_vocab=model.n_vocab, n_ctx=engine.n_ctx, grammar=grammar
    )
    try:
        sampler = SamplerChain(model, plan, history=[t for t in tokens if not is_image(t)])
    except NativeError as exc:
        raise BadRequestError(str(exc)) from exc
    channel = Channel(outbox, hold_text=not req.stream)
    job = Job(
        prompt=tokens,
        options=req.options,
        sampler=sampler,
        emit=channel.put,
        logprobs=req.logprobs,
        top_logprobs=req.top_logprobs,
        shift=req.shift,
        images={} if layout is None else layout.images,
    )
    budget = req.trace_budget
    if budget is not None and grammar is None:  # a grammar decides the output itself
        job.trace = TraceLimit(budget.tokens, budget.opening, budget.closing, opened=budget.opened)
        job.trace_close = tuple(model.tokenize(budget.closing, add_special=False))
    return job, channel


def _check_images_fit(layout: ImagePrompt, n_ctx: int, n_batch: int) -> None:
    """A prompt with images is never cut (an image cannot be half kept): it fits, or it
    is a 400 that says by how much."""
    n_image = sum(1 for t in layout.tokens if is_image(t))
    if len(layout.tokens) > n_ctx:
        raise BadRequestError(
            f"the prompt with its images does not fit in the context: {len(layout.tokens)} "
            f"tokens ({n_image} for images) but num_ctx is {n_ctx}"
        )
    one_batch = [image.n_tokens for image in layout.images.values() if image.non_causal]
    largest = max(one_batch, default=0)
    if largest > n_batch:
        raise BadRequestError(
            f"an image needs {largest} positions in one batch but num_batch is {n_batch}"
        )
    if is_image(layout.tokens[-1]):
        raise BadRequestError("the prompt must not end with an image")
