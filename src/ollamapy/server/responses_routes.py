"""`/v1/responses`: the OpenAI Responses API over the one native chat path.

`POST` reads the body (`openai.responses_api`), prepends the stored conversation of
`previous_response_id`, translates everything into one native `ChatRequest`, runs it
through `inference.prepare_chat` / `chat_events`, and encodes the events
(`openai.responses_stream`); with `store` (the default, as OpenAI's) the finished response
and its conversation go into the `ResponseStore`. `GET` and `DELETE /v1/responses/{id}`
read and remove stored responses; `/v1/conversations` creates, reads and deletes the
conversations a request names with `conversation`. Errors are OpenAI error objects, with
`param` and `code` where the failure names them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ollamapy.errors import BadRequestError, NotFoundError, OllamaError
from ollamapy.openai import SSE_MEDIA_TYPE, error_for, error_object, status_of
from ollamapy.openai.requests import OPENAI_TEMPERATURE, OPENAI_TOP_P
from ollamapy.openai.responses_api import (
    ConversationRequest,
    ResponsesRequest,
    ResponsesRequestError,
    check_request,
    conversation_id,
    dump_items,
    parse_items,
    request_items,
    to_chat_request,
    toolset,
)
from ollamapy.openai.responses_stream import (
    ResponseBuilder,
    base_fields,
    collect_response,
    item_page,
    listed_items,
    new_id,
    response_events,
    sse_frames,
)
from ollamapy.openai.stream import aclose
from ollamapy.server import inference
from ollamapy.server.http import (
    describe_validation_error,
    read_body,
    read_json,
    unless_client_leaves,
)
from ollamapy.server.responses_store import ResponseStore, StoredConversation, StoredResponse
from ollamapy.server.state import state_of

log = logging.getLogger(__name__)

Json = dict[str, Any]
Handler = Callable[[Request], Awaitable[Response]]

FINISHED = ("response.completed", "response.incomplete")

DISABLED_HINT = (
    ' (truncation is "disabled": send truncation "auto" to drop the oldest input items instead)'
)


def responses_errors(handler: Handler) -> Handler:
    """Every failure as an OpenAI error object; a `ResponsesRequestError` names its param."""

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except ResponsesRequestError as exc:
            body = error_object(400, exc.message, param=exc.param, code=exc.code)
            return JSONResponse(body, status_code=400)
        except Exception as exc:
            if not isinstance(exc, OllamaError):
                log.exception("unhandled error on %s %s", request.method, request.url.path)
            return JSONResponse(error_for(exc), status_code=status_of(exc))

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


def store_of(request: Request) -> ResponseStore:
    store: ResponseStore = request.app.state.responses
    return store


# ----------------------------------------------------------------------------- create


@responses_errors
async def create_response(request: Request) -> Response:
    body = await read_body(request, ResponsesRequest)
    check_request(body)
    store = store_of(request)
    conversation = conversation_id(body)
    new_items = request_items(body.input)
    earlier = await history(store, body.previous_response_id, conversation)
    items = [*earlier, *new_items]
    native = to_chat_request(body, items)
    tools = toolset(body.tools)
    if tools.left_out:
        log.warning("/v1/responses: left out hosted tools %s", ", ".join(tools.left_out))
    state = state_of(request)
    prepared = await inference.prepare_chat(state, native)
    builder = ResponseBuilder(echo(body, tools.echo()), tools.custom_names)
    events = inference.chat_events(state, prepared, native)

    async def save() -> None:
        """Keep the finished response (`store`) and add this turn to its conversation."""
        if not builder.finished:
            return
        response = builder.response()
        if body.store:
            await run_in_threadpool(store.put, StoredResponse(response, dump_items(items)))
        if conversation is not None:
            turn = [*dump_items(new_items), *response["output"]]
            await run_in_threadpool(store.extend_conversation, conversation, turn)

    if body.stream:
        return await stream(request, response_events(builder, events), save, body.truncation)
    try:
        result = await unless_client_leaves(request, collect_response(builder, events))
    except BadRequestError as exc:
        raise explained(exc, body.truncation) from None
    await save()
    return JSONResponse(result)


async def history(
    store: ResponseStore, previous_id: str | None, conversation: str | None
) -> list[Any]:
    """The conversation a request continues: the previous response's input and output, or
    the items of its `conversation`."""
    if previous_id is not None:
        stored = await run_in_threadpool(store.get, previous_id)
        if stored is None:
            raise ResponsesRequestError(
                f"Previous response with id '{previous_id}' not found.",
                param="previous_response_id",
                code="previous_response_not_found",
            )
        return parse_items(stored.conversation, "previous_response")
    if conversation is not None:
        found = await run_in_threadpool(store.get_conversation, conversation)
        if found is None:
            raise ResponsesRequestError(
                f"Conversation with id '{conversation}' not found.",
                param="conversation",
                code="conversation_not_found",
            )
        return parse_items(found.items, "conversation")
    return []


def echo(body: ResponsesRequest, tools: list[Json]) -> Json:
    """The request fields the response object repeats (`tools`: those served)."""
    text = body.text.format if body.text is not None else None
    return base_fields(
        model=body.model,
        instructions=body.instructions,
        tools=tools,
        tool_choice=body.tool_choice,
        parallel_tool_calls=body.parallel_tool_calls,
        temperature=OPENAI_TEMPERATURE if body.temperature is None else body.temperature,
        top_p=OPENAI_TOP_P if body.top_p is None else body.top_p,
        max_output_tokens=body.max_output_tokens,
        effort=body.reasoning.effort if body.reasoning is not None else None,
        text_format=text.model_dump(by_alias=True, exclude_none=True) if text else None,
        previous_response_id=body.previous_response_id,
        store=body.store,
        truncation=body.truncation,
        metadata=body.metadata,
        conversation=conversation_id(body),
    )


def explained(exc: BadRequestError, truncation: str) -> BadRequestError:
    """The runner's refusal of a prompt longer than the context, saying how to allow it."""
    if truncation == "disabled" and "context" in exc.message:
        return ResponsesRequestError(
            exc.message + DISABLED_HINT, param="input", code="context_length_exceeded"
        )
    return exc


async def stream(
    request: Request,
    events: AsyncIterator[Json],
    save: Callable[[], Awaitable[None]],
    truncation: str,
) -> Response:
    """Stream as SSE; the first event is pulled now, so a request refused before the model
    wrote anything keeps its HTTP status. The response is stored before its terminal event
    goes out: a client that continues as soon as it reads it finds it stored."""
    try:
        first = await unless_client_leaves(request, anext(events))
    except StopAsyncIteration:
        raise OllamaError("no response from the model") from None
    except BadRequestError as exc:
        raise explained(exc, truncation) from None
    body = sse_frames(first, saved_first(events, save))
    return StreamingResponse(body, media_type=SSE_MEDIA_TYPE)


async def saved_first(
    events: AsyncIterator[Json], save: Callable[[], Awaitable[None]]
) -> AsyncIterator[Json]:
    """The events, with `save` run just before the one that finishes the response."""
    try:
        async for event in events:
            if event["type"] in FINISHED:
                await save()
            yield event
    finally:
        await aclose(events)


# ----------------------------------------------------------------------------- stored


@responses_errors
async def retrieve_response(request: Request) -> Response:
    response_id: str = request.path_params["response_id"]
    stored = await run_in_threadpool(store_of(request).get, response_id)
    if stored is None:
        raise NotFoundError(f"Response with id '{response_id}' not found.")
    return JSONResponse(stored.response)


@responses_errors
async def list_input_items(request: Request) -> Response:
    """`GET /v1/responses/{id}/input_items`: what the response was given (stored history
    included), newest first unless `order=asc`, `limit` (1-100) at a time after `after`."""
    response_id: str = request.path_params["response_id"]
    stored = await run_in_threadpool(store_of(request).get, response_id)
    if stored is None:
        raise NotFoundError(f"Response with id '{response_id}' not found.")
    query = request.query_params
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise ResponsesRequestError("order must be 'asc' or 'desc'", param="order")
    try:
        limit = int(query.get("limit", "20"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100:
        raise ResponsesRequestError("limit must be an integer from 1 to 100", param="limit")
    items = listed_items(stored.items, response_id)
    return JSONResponse(item_page(items, order=order, limit=limit, after=query.get("after")))


@responses_errors
async def delete_response(request: Request) -> Response:
    response_id: str = request.path_params["response_id"]
    if not await run_in_threadpool(store_of(request).delete, response_id):
        raise NotFoundError(f"Response with id '{response_id}' not found.")
    return JSONResponse({"id": response_id, "object": "response", "deleted": True})


# ----------------------------------------------------------------------------- conversations


@responses_errors
async def create_conversation(request: Request) -> Response:
    """`POST /v1/conversations`: a conversation, optionally seeded with items, that
    responses continue with `conversation` (each finished turn is appended to it)."""
    data = await read_json(request) if await request.body() else {}
    if not isinstance(data, dict):
        raise BadRequestError("request body must be a JSON object")
    try:
        body = ConversationRequest.model_validate(data)
    except ValidationError as exc:
        raise BadRequestError(describe_validation_error(exc)) from None
    items = dump_items(parse_items(body.items or [], "items"))
    conversation = {
        "id": new_id("conv"),
        "object": "conversation",
        "created_at": int(time.time()),
        "metadata": body.metadata or {},
    }
    stored = StoredConversation(conversation, items)
    await run_in_threadpool(store_of(request).put_conversation, stored)
    return JSONResponse(conversation)


@responses_errors
async def retrieve_conversation(request: Request) -> Response:
    key: str = request.path_params["conversation_id"]
    found = await run_in_threadpool(store_of(request).get_conversation, key)
    if found is None:
        raise NotFoundError(f"Conversation with id '{key}' not found.")
    return JSONResponse(found.conversation)


@responses_errors
async def delete_conversation(request: Request) -> Response:
    key: str = request.path_params["conversation_id"]
    if not await run_in_threadpool(store_of(request).delete_conversation, key):
        raise NotFoundError(f"Conversation with id '{key}' not found.")
    return JSONResponse({"id": key, "object": "conversation.deleted", "deleted": True})


ROUTES = [
    Route("/v1/responses", create_response, methods=["POST"]),
    Route("/v1/responses/{response_id}", retrieve_response, methods=["GET"]),
    Route("/v1/responses/{response_id}", delete_response, methods=["DELETE"]),
    Route("/v1/responses/{response_id}/input_items", list_input_items, methods=["GET"]),
    Route("/v1/conversations", create_conversation, methods=["POST"]),
    Route("/v1/conversations/{conversation_id}", retrieve_conversation, methods=["GET"]),
    Route("/v1/conversations/{conversation_id}", delete_conversation, methods=["DELETE"]),
]
