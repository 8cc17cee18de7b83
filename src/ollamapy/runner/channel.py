"""How generated events travel from the engine's thread to each HTTP stream.

The engine calls `Channel.put` from its decode thread; the `Outbox` wakes the event loop
once per engine step for every channel that got events; `EventStream` writes a channel's
events as NDJSON lines, pausing `FLUSH_INTERVAL` after each write so the tokens produced
meanwhile go out together, and cancels the job when its client goes away.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from typing import Any

import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ollamapy.runner import protocol as p
from ollamapy.runner.engine import Job
from ollamapy.types.logprobs import TokenLogprob

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 0.02  # seconds between two writes of one stream (50 Hz is smooth)


class Outbox:
    """Wakes the event loop once per engine step for every channel that got events.

    Waking an event loop from another thread costs a self-pipe write, an epoll round and
    a few callbacks, and the woken loop then wants the GIL: paid per token and per
    stream, it interleaves the loop's writing with the engine's sampling of the next
    slot. The engine calls `flush` right before `llama_decode` (which frees the GIL), so
    the loop writes while the engine decodes.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._marked: list[Channel] = []

    def mark(self, channel: Channel) -> None:
        """Engine thread: `channel` has events the loop has not been told about."""
        self._marked.append(channel)

    def flush(self) -> None:
        """Engine thread: one wake-up for every marked channel (RuntimeError if closed)."""
        if self._marked:
            marked, self._marked = self._marked, []
            self._loop.call_soon_threadsafe(_wake_all, marked)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _wake_all(channels: list[Channel]) -> None:
    for channel in channels:
        channel.wake()


class Channel:
    """Hands events from the engine thread to the event loop, waking it at most once.

    The engine only asks for a wake-up (through the `Outbox`) when none is pending, and
    the stream writer keeps one pending (so the engine stays quiet) while it pauses
    `FLUSH_INTERVAL` after each write: tokens produced meanwhile go out together in the
    next write. With `hold_text` (a request that is not streamed) the text is kept here
    and queued as one chunk in front of the done or error event: the loop is woken once
    per request instead of once per step, and its writing never competes with the decode.
    """

    def __init__(self, outbox: Outbox, *, hold_text: bool = False) -> None:
        self._outbox = outbox
        self._items: collections.deque[p.CompletionEvent] = collections.deque()
        self._ready = asyncio.Event()
        self._scheduled = False  # set by the engine thread, cleared by the loop
        self._last_queued = False  # set by the engine thread with the done/error event
        self._hold_text = hold_text
        self._held: list[str] = []
        self._held_logprobs: list[TokenLogprob] = []
        self._pause: asyncio.Future[None] | None = None
        self.finished = asyncio.Event()
        """Set once the last event (done or error) is queued: ends the writer's pause."""

    def put(self, event: p.CompletionEvent) -> None:
        """Engine thread: queue one event; the loop hears of it at the outbox's flush."""
        if isinstance(event, p.CompletionChunk):
            if self._hold_text:
                self._held.append(event.content)
                self._held_logprobs.extend(event.logprobs)
                return
            self._items.append(event)
            if not self._scheduled:
                self._scheduled = True
                self._outbox.mark(self)
            return
        if self._held:
            held = p.CompletionChunk("".join(self._held), tuple(self._held_logprobs))
            self._items.append(held)
            self._held, self._held_logprobs = [], []
        self._items.append(event)
        self._last_queued = True
        self._outbox.mark(self)  # ends a pause even while a wake-up is pending

    def wake(self) -> None:
        """Event loop: new events are queued."""
        self._ready.set()
        if self._last_queued:
            self.finished.set()
            if self._pause is not None and not self._pause.done():
                self._pause.set_result(None)

    async def pause(self, seconds: float) -> None:
        """Wait up to `seconds` for more tokens to gather, but not past the last event.

        A bare future and a timer: `asyncio.wait_for` on the event would make a task per
        pause, which was a third of the loop's work per token."""
        if self.finished.is_set():
            return
        loop = asyncio.get_running_loop()
        self._pause = loop.create_future()
        timer = loop.call_later(seconds, _settle, self._pause)
        try:
            await self._pause
        finally:
            timer.cancel()
            self._pause = None

    async def next_batch(self) -> list[p.CompletionEvent]:
        """Event loop: wait for, then take, everything queued so far."""
        while True:
            items = self._drain()
            if items:
                return items
            self._scheduled = False
            if self._items:  # arrived while we were resetting the flag
                continue
            self._ready.clear()
            await self._ready.wait()

    def _drain(self) -> list[p.CompletionEvent]:
        items = self._items
        out: list[p.CompletionEvent] = []
        while items:
            out.append(items.popleft())
        return out


class EventStream(Response):
    """Streams a job's events as NDJSON, and cancels the job when the client goes away.

    It watches `http.disconnect` itself (instead of waiting for a failed write) so a
    client that leaves while the prompt is still being evaluated, or while text is held
    back by a stop-string prefix, frees its slot at the next engine step.
    """

    media_type = p.NDJSON_MEDIA_TYPE

    def __init__(self, job: Job, events: Channel) -> None:
        super().__init__(media_type=self.media_type)
        self._job = job
        self._events = events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", self.media_type.encode())],
            }
        )
        pump = asyncio.ensure_future(self._pump(send))
        watch = asyncio.ensure_future(_wait_disconnect(receive))
        try:
            await asyncio.wait({pump, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._job.cancel()  # a no-op for the engine when the job already finished
            for task in (pump, watch):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await task
        if pump.done() and not pump.cancelled() and pump.exception() is None:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _pump(self, send: Send) -> None:
        while True:
            batch = await self._events.next_batch()
            body = b"".join(orjson.dumps(e.to_json()) + b"\n" for e in batch)
            await send({"type": "http.response.body", "body": body, "more_body": True})
            if not isinstance(batch[-1], p.CompletionChunk):
                return
            await self._events.pause(FLUSH_INTERVAL)


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def finished_before_disconnect(work: asyncio.Future[Any], receive: Receive) -> bool:
    """Wait for `work` or for the client to disconnect, whichever comes first; whether
    `work` finished (its result is then ready)."""
    watch = asyncio.ensure_future(_wait_disconnect(receive))
    try:
        await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
    return work.done()
