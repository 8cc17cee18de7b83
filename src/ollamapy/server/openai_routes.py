"""The OpenAI-compatible routes under `/v1`: translate, run the native path, translate back.

There is one inference path: these routes turn an OpenAI request into the native request
(`ollamapy.openai.requests`), run it through `inference.prepare_*`/`*_events` (the one
completion path, which yields typed events) and reshape those events
(`ollamapy.openai.responses`). Errors are OpenAI error objects rather than Ollama's
`{"error": "..."}`, so these handlers catch everything themselves instead of relying on
the app's native exception handlers.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ollamapy.errors import InvalidNameError, ModelNotFoundError, OllamaError
from ollamapy.openai import (
    SSE_MEDIA_TYPE,
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    ResponseMeta,
    chat_chunks,
    collect_chat,
    collect_completion,
    completion_chunks,
    embedding_list,
    error_for,
    include_usage,
    model_list,
    model_object,
    sse_body,
    status_of,
    to_chat_request,
    to_embed_request,
    to_generate_request,
)
from ollamapy.server import embed, inference
from ollamapy.server.http import FloatsResponse, errors_as, read_body, unless_client_leaves
from ollamapy.server.state import state_of
from ollamapy.types import ModelName

log = logging.getLogger(__name__)

Event = dict[str, Any]


openai_errors = errors_as(error_for, status_of)
"""Answer every failure of a route with an OpenAI error object and its status."""


async def sse_response(request: Request, chunks: AsyncIterator[Event]) -> Response:
    """Stream chunks as SSE; the first is pulled now, so an early failure keeps its status
    (and a client that leaves before it cancels the work)."""
    try:
        first = await unless_client_leaves(request, anext(chunks))
    except StopAsyncIteration:
        raise OllamaError("no response from the model") from None
    return StreamingResponse(sse_body(first, chunks), media_type=SSE_MEDIA_TYPE)


# ----------------------------------------------------------------------------- chat


@openai_errors
async def chat_completions(request: Request) -> Response:
    body = await read_body(request, ChatCompletionRequest)
    native = to_chat_request(body)
    state = state_of(request)
    prepared = await inference.prepare_chat(state, native)
    meta = ResponseMeta.new("chatcmpl", body.model)
    events = inference.chat_events(state, prepared, native)
    if body.stream:
        usage = include_usage(body.stream_options)
        return await sse_response(request, chat_chunks(meta, events, include_usage=usage))
    return JSONResponse(await unless_client_leaves(request, collect_chat(meta, events)))


# ----------------------------------------------------------------------------- completions


@openai_errors
async def completions(request: Request) -> Response:
    body = await read_body(request, CompletionRequest)
    native = to_generate_request(body)
    state = state_of(request)
    prepared = await inference.prepare_generate(state, native)
    meta = ResponseMeta.new("cmpl", body.model)
    events = inference.generate_events(state, prepared, native)
    echo = native.prompt if body.echo else ""
    if body.stream:
        usage = include_usage(body.stream_options)
        chunks = completion_chunks(meta, events, include_usage=usage, echo=echo)
        return await sse_response(request, chunks)
    collected = collect_completion(meta, events, echo=echo)
    return JSONResponse(await unless_client_leaves(request, collected))


# ----------------------------------------------------------------------------- models


@openai_errors
async def list_models(request: Request) -> Response:
    entries = await run_in_threadpool(state_of(request).store.list_models)
    objects = (model_object(e.name.display, e.name.namespace, e.modified_at) for e in entries)
    return JSONResponse(model_list(objects))


@openai_errors
async def retrieve_model(request: Request) -> Response:
    requested: str = request.path_params["model"]
    try:
        name = ModelName.parse(requested)
    except InvalidNameError:
        raise ModelNotFoundError(requested) from None  # a name that cannot exist is not found
    entry = await run_in_threadpool(state_of(request).store.entry, name)
    return JSONResponse(model_object(requested, name.namespace, entry.modified_at))


# ----------------------------------------------------------------------------- embeddings


@openai_errors
async def embeddings(request: Request) -> Response:
    body = await read_body(request, EmbeddingRequest)
    native = to_embed_request(body)
    result = await unless_client_leaves(request, embed.embed(state_of(request), native))
    return FloatsResponse(embedding_list(body.model, result, body.encoding_format))


ROUTES = [
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/v1/completions", completions, methods=["POST"]),
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/models/{model:path}", retrieve_model, methods=["GET"]),
    Route("/v1/embeddings", embeddings, methods=["POST"]),
]
