"""The runner's HTTP face: a small Starlette app served by uvicorn on 127.0.0.1.

Start-up protocol (what `ollamapy.llm` relies on):

1. bind the socket (port 0 = let the OS pick) and print ONE JSON line on stdout:
   `{"event": "listening", "port": N, "pid": P}`;
2. load the model in a worker thread while `GET /health` answers 503 `{"status": "loading"}`;
3. once loaded, `GET /health` answers 200 `{"status": "ok"}`;
4. if loading fails, print `error: <reason>` on stderr and exit with status 1.

Errors before a stream starts are JSON `{"error": ...}` with a 4xx/5xx status; an error
after a `/completion` stream started is its last NDJSON line, `{"error": ...}`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ollamapy.errors import BadRequestError, OllamaError
from ollamapy.runner import protocol as p
from ollamapy.runner.engine import Engine, EngineClosedError, Job
from ollamapy.runner.grammar import format_to_grammar
from ollamapy.runner.loader import LoadedModel, load
from ollamapy.runner.native import NativeError, SamplerChain, init_backend
from ollamapy.runner.sampling import plan_sampler_chain

log = logging.getLogger(__name__)

EXIT_LOAD_FAILED = 1
FLUSH_INTERVAL = 0.02  # seconds between two writes of one stream (50 Hz is smooth)


@dataclass
class RunnerState:
    """What the HTTP handlers see: loading progress, then the loaded model and engine."""

    args: p.LaunchArgs
    progress: float = 0.0
    loaded: LoadedModel | None = None
    engine: Engine | None = None
    outbox: Outbox | None = None
    error: str | None = None
    info: p.RunnerInfo | None = field(default=None)
    embed_thread: ThreadPoolExecutor = field(default_factory=lambda: _one_thread("embed"))
    """Where every embedding decode runs (see `_one_thread`)."""

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
        assert state.outbox is not None  # made with the engine
        job, events = _make_job(loaded, engine, state.outbox, req)
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
        if not await _finished_before_disconnect(work, request.receive):
            stop.set()  # the decode under way ends; no further batch starts
            with contextlib.suppress(embed.EmbeddingStopped, NativeError, BadRequestError):
                await work
            return _error("client disconnected", 499)
        try:
            vectors, count = work.result()
        except NativeError as exc:
            return _error(str(exc), 500)
        return JSONResponse(p.EmbeddingResponse.from_vectors(vectors, count).to_json())

    routes = [
        Route(p.HEALTH_PATH, health, methods=["GET"]),
        Route(p.INFO_PATH, guarded(info), methods=["GET"]),
        Route(p.TOKENIZE_PATH, guarded(tokenize), methods=["POST"]),
        Route(p.DETOKENIZE_PATH, guarded(detokenize), methods=["POST"]),
        Route(p.COMPLETION_PATH, guarded(completion), methods=["POST"]),
        Route(p.EMBEDDING_PATH, guarded(embedding), methods=["POST"]),
    ]
    return Starlette(routes=routes)


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
    loaded: LoadedModel, engine: Engine, outbox: Outbox, req: p.CompletionRequest
) -> tuple[Job, Channel]:
    """Tokenize, build the sampler chain (bad grammars fail here, as a 400) and the job."""
    if req.images:
        raise BadRequestError("this model does not support images")
    model = loaded.model
    tokens = model.tokenize(req.prompt, add_special=True, parse_special=True)
    if not tokens:
        raise BadRequestError("the prompt is empty")
    grammar = format_to_grammar(req.format)
    plan = plan_sampler_chain(
        req.options, n_vocab=model.n_vocab, n_ctx=engine.n_ctx, grammar=grammar
    )
    try:
        sampler = SamplerChain(model, plan, history=tokens)
    except NativeError as exc:
        raise BadRequestError(str(exc)) from exc
    channel = Channel(outbox, hold_text=not req.stream)
    return Job(prompt=tokens, options=req.options, sampler=sampler, emit=channel.put), channel


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
        self._pause: asyncio.Future[None] | None = None
        self.finished = asyncio.Event()
        """Set once the last event (done or error) is queued: ends the writer's pause."""

    def put(self, event: p.CompletionEvent) -> None:
        """Engine thread: queue one event; the loop hears of it at the outbox's flush."""
        if isinstance(event, p.CompletionChunk):
            if self._hold_text:
                self._held.append(event.content)
                return
            self._items.append(event)
            if not self._scheduled:
                self._scheduled = True
                self._outbox.mark(self)
            return
        if self._held:
            self._items.append(p.CompletionChunk("".join(self._held)))
            self._held = []
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


async def _finished_before_disconnect(work: asyncio.Future[Any], receive: Receive) -> bool:
    """Wait for `work` or for the client to disconnect, whichever comes first; whether
    `work` finished (its result is then ready)."""
    watch = asyncio.ensure_future(_wait_disconnect(receive))
    try:
        await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
    return work.done()


# --------------------------------------------------------------------------- main


def _bind(host: str, port: int) -> socket.socket:
    # proto must say TCP: asyncio only sets TCP_NODELAY on accepted sockets whose proto is
    # IPPROTO_TCP, and without it every small response waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _announce(port: int) -> None:
    line = json.dumps(p.ListeningLine(port=port, pid=os.getpid()).to_json())
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _watch_parent(parent_pid: int) -> None:
    """Exit (via SIGTERM to ourselves) when the parent dies, so no runner is orphaned."""

    def loop() -> None:
        while True:
            if os.getppid() != parent_pid:
                os.kill(os.getpid(), signal.SIGTERM)
                return
            threading.Event().wait(1.0)

    threading.Thread(target=loop, name="ollamapy-parent-watch", daemon=True).start()


async def _load_into(state: RunnerState, server: uvicorn.Server) -> None:
    def progress(value: float) -> None:
        state.progress = value

    try:
        loaded = await asyncio.to_thread(load, state.args, progress)
    except Exception as exc:  # any failure to load ends the process with the reason
        _fail_load(state, server, str(exc) or type(exc).__name__)
        return
    try:
        outbox = Outbox(asyncio.get_running_loop())
        engine = Engine(
            loaded.model, loaded.context, n_batch=state.args.num_batch, on_flush=outbox.flush
        )
        engine.start()
    except Exception as exc:
        loaded.close()
        _fail_load(state, server, f"failed to start the engine: {exc}")
        return
    state.loaded, state.info, state.engine, state.outbox = loaded, loaded.info(), engine, outbox
    log.info("model loaded: %s", state.info.description)


def _fail_load(state: RunnerState, server: uvicorn.Server, reason: str) -> None:
    state.error = reason
    sys.stderr.write(f"error: {reason}\n")
    sys.stderr.flush()
    server.should_exit = True


async def serve(args: p.LaunchArgs) -> int:
    """Run the runner until SIGTERM/SIGINT; return the process exit status."""
    init_backend(verbose=args.verbose)
    if args.parent_pid is not None:
        _watch_parent(args.parent_pid)
    sock = _bind(args.host, args.port)
    state = RunnerState(args=args)
    config = uvicorn.Config(
        build_app(state),
        log_level="debug" if args.verbose else "warning",
        access_log=args.verbose,
        timeout_graceful_shutdown=5,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    _announce(sock.getsockname()[1])
    loader = asyncio.create_task(_load_into(state, server))
    # uvicorn re-raises SIGTERM after its graceful shutdown; with a no-op handler in
    # place that re-raise returns here, so the engine, context and model are freed.
    signal.signal(signal.SIGTERM, lambda _sig, _frame: None)
    try:
        await server.serve(sockets=[sock])
    finally:
        loader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loader
        stopped = state.engine is None or await asyncio.to_thread(state.engine.close)
        await asyncio.to_thread(state.embed_thread.shutdown)  # lets a running embed finish
        if state.loaded is not None and stopped:
            state.loaded.close()
        sock.close()
    return EXIT_LOAD_FAILED if state.error else 0


def main(argv: list[str] | None = None) -> int:
    return run(p.LaunchArgs.from_argv(sys.argv[1:] if argv is None else argv))


def run(args: p.LaunchArgs) -> int:
    """Serve `args` until told to stop; the process exit status."""
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return asyncio.run(serve(args))
