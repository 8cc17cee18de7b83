"""Request parsing and response encoding at the edge: JSON in, JSON or NDJSON out.

Errors before the first byte become an HTTP status with `{"error": ...}`; once a stream
has started, an error is sent as a final `{"error": ...}` line, as Ollama does.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive

from ollamapy.api.types import WireModel, accept_name_alias
from ollamapy.errors import BadRequestError, ClientGoneError, OllamaError

log = logging.getLogger(__name__)

MAX_JSON_BODY = 256 * 1024 * 1024
"""Largest JSON body accepted; images travel base64-encoded inside chat requests."""

ModelT = TypeVar("ModelT", bound=WireModel)
BodyT = TypeVar("BodyT", bound=BaseModel)
Handler = Callable[[Request], Awaitable[Response]]
T = TypeVar("T")
Event = dict[str, Any]


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def read_json(request: Request) -> Any:
    """The request body as JSON; missing, oversized or malformed bodies are 400s."""
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_JSON_BODY:
                raise BadRequestError("request body too large")
    except ClientDisconnect:
        raise BadRequestError("client disconnected") from None
    if not body.strip():
        raise BadRequestError("missing request body")
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequestError(f"invalid JSON: {exc}") from None


async def read_request(request: Request, model: type[ModelT]) -> ModelT:
    """Parse and validate a request body into its wire model."""
    data = await read_object(request)
    return validated(model, accept_name_alias(model, data))


async def read_body(request: Request, model: type[BodyT]) -> BodyT:
    """Parse a JSON object body into a dialect's request model (`/v1`, `/v1/messages`)."""
    return validated(model, await read_object(request))


async def read_object(request: Request) -> dict[str, Any]:
    """The request body, which must be a JSON object (else a 400)."""
    data = await read_json(request)
    if not isinstance(data, dict):
        raise BadRequestError("request body must be a JSON object")
    return data


def validated(model: type[BodyT], data: dict[str, Any]) -> BodyT:
    """`data` as `model`; what does not validate is a 400 naming the first bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BadRequestError(describe_validation_error(exc)) from None


def errors_as(
    body_of: Callable[[Exception], Any], status_of: Callable[[Exception], int]
) -> Callable[[Handler], Handler]:
    """A decorator answering every failure of a route in one dialect's error shape
    (`body_of`, `status_of`); anything that is not an `OllamaError` is logged first."""

    def decorate(handler: Handler) -> Handler:
        async def wrapped(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:
                if not isinstance(exc, OllamaError):
                    log.exception("unhandled error on %s %s", request.method, request.url.path)
                return JSONResponse(body_of(exc), status_code=status_of(exc))

        wrapped.__name__ = handler.__name__
        wrapped.__doc__ = handler.__doc__
        return wrapped

    return decorate


def describe_validation_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    location = ".".join(str(part) for part in first["loc"]) or "body"
    if first["type"] == "missing":
        return f"missing required field '{location}'"
    return f"invalid value for '{location}': {first['msg']}"


def json_body(value: object) -> bytes:
    """Compact UTF-8 JSON of `value`; numpy arrays become (nested) arrays of numbers.

    Floats are written in their shortest form that reads back exactly (float32 values as
    float32, like Ollama's Go encoder), several times faster than `json.dumps` and with
    no Python float made per value. Non-finite floats would become `null`: callers check
    their vectors first.
    """
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)


class FloatsResponse(Response):
    """A JSON response whose values may include numpy float matrices (see `json_body`)."""

    media_type = "application/json"

    def __init__(self, content: Mapping[str, Any]) -> None:
        super().__init__(json_body(content))


def ndjson_line(event: Event) -> bytes:
    """One compact UTF-8 JSON line: orjson (a few times cheaper than `json.dumps`, and
    paid once per streamed token), or `json` for what orjson refuses, such as an integer
    beyond 64 bits in a model's tool-call arguments."""
    try:
        return orjson.dumps(event, option=orjson.OPT_NON_STR_KEYS) + b"\n"
    except TypeError:
        return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


async def stream_events(events: AsyncIterator[Event], request: Request | None = None) -> Response:
    """Stream events as NDJSON, failing with a status if the first event is an error.

    With `request`, a client that leaves before the first event (while the model loads or
    the prompt is evaluated) cancels the work at once instead of at the first token."""
    first_event: Awaitable[Event] = anext(events)
    if request is not None:
        first_event = unless_client_leaves(request, first_event)
    try:
        first = await first_event
    except StopAsyncIteration:
        return error_response(500, "no response")
    return StreamingResponse(_continue(first, events), media_type="application/x-ndjson")


async def _continue(first: Event, events: AsyncIterator[Event]) -> AsyncIterator[bytes]:
    yield ndjson_line(first)
    try:
        async for event in events:
            yield ndjson_line(event)
    except OllamaError as exc:
        yield ndjson_line({"error": exc.message})
    except Exception as exc:  # an error after the first byte can only be reported in-band
        log.exception("stream failed")
        yield ndjson_line({"error": str(exc) or type(exc).__name__})
    finally:
        await aclose(events)


async def aclose(events: AsyncIterator[Event]) -> None:
    """Close an async generator early (releasing the runner it holds), if it can be."""
    close: Callable[[], Awaitable[None]] | None = getattr(events, "aclose", None)
    if close is not None:
        await close()


async def last_event(events: AsyncIterator[Event]) -> Response:
    """For `stream: false` progress operations: run to the end, answer with the last event."""
    last: Event = {}
    async for event in events:
        last = event
    return JSONResponse(last)


async def unless_client_leaves(request: Request, work: Awaitable[T]) -> T:
    """Await `work` (e.g. collecting a whole completion for `stream: false`) while watching
    for the client to disconnect; if it does first, cancel `work` and raise `ClientGoneError`.

    Starlette never cancels a handler whose client went away, and nothing is written to
    the client before the answer is complete, so without this a non-streamed request ran
    its generation to the end for nobody. Cancelling `work` unwinds the runner stream it
    is reading (closing that connection, which is how the runner learns to stop the job)
    and leaves the scheduler entry it holds. Call it once the request body has been read:
    it takes over `receive`.
    """
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_wait_disconnect(request.receive))
    try:
        done, _ = await asyncio.wait((task, watch), return_when=asyncio.FIRST_COMPLETED)
    finally:  # also when this handler is itself cancelled (server shutdown)
        watch.cancel()
        if not task.done():
            task.cancel()
        await asyncio.wait((task, watch))  # let the work unwind: its cleanup closes the stream
    _settled(watch)
    if task in done:
        return task.result()
    _settled(task)  # what it raised while unwinding is no longer anyone's concern
    raise ClientGoneError()


def _settled(task: asyncio.Future[Any]) -> None:
    """Take what an ended task raised (asyncio warns about exceptions nobody retrieved)."""
    if not task.cancelled() and task.exception() is not None:
        log.debug("ignored after the request ended", exc_info=task.exception())


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def handle_errors(request: Request, exc: Exception) -> Response:
    if isinstance(exc, OllamaError):
        return error_response(exc.status_code, exc.message)
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, str(exc) or type(exc).__name__)
