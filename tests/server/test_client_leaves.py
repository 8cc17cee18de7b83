"""The edge helpers that stop a request's work when its client disconnects, and keep the
keys meant for other API layers out of native answers (no model, no server)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import pytest
from starlette.requests import Request

from ollamapy.errors import BadRequestError, ClientGoneError
from ollamapy.server.http import (
    stream_events,
    unless_client_leaves,
)

Message = dict[str, Any]


class Client:
    """The `receive` side of one HTTP request whose body was read: it answers only when
    the client disconnects, and records whether a pending `receive()` was abandoned."""

    def __init__(self) -> None:
        self.gone = asyncio.Event()
        self.abandoned = 0

    async def receive(self) -> Message:
        try:
            await self.gone.wait()
        except asyncio.CancelledError:
            self.abandoned += 1
            raise
        return {"type": "http.disconnect"}

    def request(self) -> Request:
        scope = {"type": "http", "method": "POST", "path": "/", "headers": []}
        return Request(scope, self.receive)


class Generation:
    """Stands in for a runner stream: yields `events`, then waits forever; records whether
    it was unwound (as closing the runner connection would be)."""

    def __init__(self, *events: dict[str, Any]) -> None:
        self.events = events
        self.closed = asyncio.Event()

    async def stream(self) -> AsyncIterator[dict[str, Any]]:
        try:
            for event in self.events:
                yield event
            await asyncio.Event().wait()
            yield {}  # never reached
        finally:
            self.closed.set()


async def collect(events: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    last: dict[str, Any] = {}
    async for event in events:
        last = event
    return last


async def started(awaitable: Awaitable[Any]) -> asyncio.Future[Any]:
    """Start `awaitable` as a task and let it run until it blocks."""
    task = asyncio.ensure_future(awaitable)
    await asyncio.sleep(0.01)
    assert not task.done()
    return task


async def test_a_client_that_leaves_cancels_the_collection_and_unwinds_the_stream() -> None:
    client, generation = Client(), Generation({"response": "a", "done": False})
    task = await started(unless_client_leaves(client.request(), collect(generation.stream())))
    assert not generation.closed.is_set()
    client.gone.set()
    with pytest.raises(ClientGoneError):
        await asyncio.wait_for(task, 5)
    assert generation.closed.is_set()  # unwound before the error reached the handler


async def test_work_that_finishes_first_returns_its_result_and_stops_watching() -> None:
    client = Client()

    async def work() -> int:
        await asyncio.sleep(0.01)
        return 42

    assert await unless_client_leaves(client.request(), work()) == 42
    assert client.abandoned == 1


async def test_errors_of_the_work_reach_the_handler_unchanged() -> None:
    async def work() -> None:
        raise BadRequestError("bad schema")

    with pytest.raises(BadRequestError, match="bad schema"):
        await unless_client_leaves(Client().request(), work())


async def test_a_cancelled_handler_cancels_its_work_too() -> None:
    generation = Generation()
    task = await started(unless_client_leaves(Client().request(), collect(generation.stream())))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert generation.closed.is_set()


async def test_a_stream_whose_client_leaves_before_the_first_event_is_cancelled() -> None:
    """The first event is awaited before the response starts (model load, prompt
    evaluation): a client that leaves meanwhile stops the work then, not at the first token."""
    client, generation = Client(), Generation()
    task = await started(stream_events(generation.stream(), client.request()))
    client.gone.set()
    with pytest.raises(ClientGoneError):
        await asyncio.wait_for(task, 5)
    assert generation.closed.is_set()
