"""The Anthropic Messages routes: translate, run the native path, translate back.

`POST /v1/messages` turns the request into a native chat request
(`ollamapy.anthropic.requests`), runs it through `inference.prepare_chat` and
`inference.chat_events` (the one completion path) and reshapes the typed events
(`ollamapy.anthropic.responses`). `POST /v1/messages/count_tokens` renders the same prompt
with the model's template and counts it with the model's tokenizer. `x-api-key` and
`anthropic-version` are accepted and not checked here. Every failure is an Anthropic error
object with its status (before a stream starts) or an `error` event (after).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ollamapy.anthropic import (
    SSE_MEDIA_TYPE,
    CountTokensRequest,
    MessageMeta,
    MessagesRequest,
    collect_message,
    error_for,
    message_events,
    sse_body,
    status_of,
    thinking_budget,
    to_chat_request,
)
from ollamapy.anthropic.responses import StreamEvent
from ollamapy.errors import OllamaError
from ollamapy.server import inference
from ollamapy.server.http import errors_as, read_body, unless_client_leaves
from ollamapy.server.state import state_of

log = logging.getLogger(__name__)


anthropic_errors = errors_as(error_for, status_of)
"""Answer every failure of a route with an Anthropic error object and its status."""


async def sse_response(request: Request, events: AsyncIterator[StreamEvent]) -> Response:
    """Stream events as SSE; the first is pulled now, so an early failure keeps its status
    (and a client that leaves before it cancels the work)."""
    try:
        first = await unless_client_leaves(request, anext(events))
    except StopAsyncIteration:
        raise OllamaError("no response from the model") from None
    return StreamingResponse(sse_body(first, events), media_type=SSE_MEDIA_TYPE)


@anthropic_errors
async def messages(request: Request) -> Response:
    body = await read_body(request, MessagesRequest)
    state = state_of(request)
    native = await inference.relax_think(state, to_chat_request(body))
    prepared = await inference.prepare_chat(state, native)
    meta = MessageMeta.new(body.model, body.stop_sequences)
    events = inference.chat_events(state, prepared, native, trace_budget=thinking_budget(body))
    if body.stream:
        return await sse_response(request, message_events(meta, events))
    return JSONResponse(await unless_client_leaves(request, collect_message(meta, events)))


@anthropic_errors
async def count_tokens(request: Request) -> Response:
    body = await read_body(request, CountTokensRequest)
    state = state_of(request)
    native = await inference.relax_think(state, to_chat_request(body))
    prepared = await inference.prepare_chat(state, native)
    counted = inference.chat_prompt_tokens(state, prepared, native)
    return JSONResponse({"input_tokens": await unless_client_leaves(request, counted)})


ROUTES = [
    Route("/v1/messages", messages, methods=["POST"]),
    Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
]
