"""`/api/pull` and `/api/push`: registry transfers streamed as Ollama's progress events.

The transfer is async end to end (httpx, file I/O in threads), so it never blocks the
event loop. When a streaming client disconnects, Starlette cancels the response, which
cancels the transfer; downloaded data stays in the store's partial files and the next
pull resumes it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ollamapy.api.types import PullRequest, PushRequest
from ollamapy.registry import Event, RegistryOptions, pull_model, push_model
from ollamapy.server.http import last_event, read_request, stream_events
from ollamapy.server.state import state_of
from ollamapy.store import Store
from ollamapy.types import ModelName

Transfer = Callable[[Store, str, RegistryOptions], AsyncIterator[Event]]


async def pull(request: Request) -> Response:
    return await _transfer(request, PullRequest, pull_model)


async def push(request: Request) -> Response:
    return await _transfer(request, PushRequest, push_model)


async def _transfer(request: Request, model: type[PullRequest], run: Transfer) -> Response:
    body = await read_request(request, model)
    ModelName.parse(body.model)  # a bad name is a 400 before anything streams
    state = state_of(request)
    options = RegistryOptions(
        insecure=body.insecure or state.config.insecure,
        username=body.username or "",
        password=body.password or "",
        noprune=state.config.noprune,
    )
    events = run(state.store, body.model, options)
    return await (stream_events(events) if body.stream else last_event(events))


ROUTES = [
    Route("/api/pull", pull, methods=["POST"]),
    Route("/api/push", push, methods=["POST"]),
]
