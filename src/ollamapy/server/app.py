"""The Starlette application and `ollama serve`.

`create_app` wires the store, the scheduler (with the runner factory injected) and the
routes; `run_server` serves it with uvicorn on `OLLAMA_HOST`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from types import FrameType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ollamapy.config import Config, HostAddress
from ollamapy.errors import NotFoundError, OllamaError
from ollamapy.openai.errors import error_object
from ollamapy.scheduler import Scheduler
from ollamapy.server import (
    anthropic_routes,
    embed,
    inference,
    metrics,
    models,
    openai_routes,
    openapi,
    responses_routes,
    transfer,
    ui,
)
from ollamapy.server.auth import KeyGuard, KeySource
from ollamapy.server.exposure import prepare_to_serve
from ollamapy.server.guards import EdgeGuard
from ollamapy.server.http import error_response, handle_errors
from ollamapy.server.responses_store import ResponseStore
from ollamapy.server.runners import default_scheduler
from ollamapy.server.state import ServerState
from ollamapy.store import Store, StoreBusyError

log = logging.getLogger(__name__)

PRUNE_GRACE_S = 15 * 60.0
"""The startup prune keeps temp files and unreferenced blobs younger than this: on a store
shared by replicas they may be another server's create or blob upload in progress."""


def create_app(config: Config, scheduler: Scheduler[Any] | None = None) -> Starlette:
    """Build the app; `scheduler` is injectable so tests can run fake runners."""
    store = Store(config.models_dir)
    state = ServerState(config, store, scheduler or default_scheduler(config))
    observed = metrics.Metrics()
    observed.watch(state.scheduler)

    responses = ResponseStore(config.models_dir.parent / "responses")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        _prepare_store(state)
        app.state.loop = asyncio.get_running_loop()
        try:
            yield
        finally:
            await state.scheduler.shutdown()  # waits for a shutdown `stop_runners` began
            responses.close()

    app = Starlette(
        routes=[
            *models.ROUTES,
            *inference.ROUTES,
            *transfer.ROUTES,
            *embed.ROUTES,
            *openai_routes.ROUTES,
            *anthropic_routes.ROUTES,
            *responses_routes.ROUTES,
            *metrics.ROUTES,
            *openapi.ROUTES,
            *ui.ROUTES,
            Route("/{path:path}", not_found, methods=_ALL_METHODS),
        ],
        middleware=[
            Middleware(metrics.RequestObserver, metrics=observed),
            Middleware(
                EdgeGuard,
                origins=config.allowed_origins,
                loopback_only=config.host.is_loopback,
            ),
            Middleware(
                KeyGuard, keys=KeySource(config.keys_file), required=config.api_keys_required
            ),
        ],
        exception_handlers={
            OllamaError: handle_errors,
            Exception: handle_errors,
            404: _404,
            405: _405,
        },
        lifespan=lifespan,
    )
    app.state.ollama = state
    app.state.responses = responses
    app.state.metrics = observed
    return app


def _prepare_store(state: ServerState) -> None:
    store = state.store
    store.root.mkdir(parents=True, exist_ok=True)
    try:
        if state.config.noprune:
            store.cleanup_temp(grace_s=PRUNE_GRACE_S)
            return
        removed = store.prune(grace_s=PRUNE_GRACE_S)
    except StoreBusyError:
        log.warning("model store busy (other servers share it): prune skipped")
        return
    if removed:
        log.info("pruned %d unused blob(s)", len(removed))


_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


async def not_found(request: Request) -> Response:
    raise NotFoundError("404 page not found")


async def _404(request: Request, exc: Exception) -> Response:
    """A path no route matches, not even the catch-all (its `.*` stops at a newline, as in
    `/v1/models/a%0Ab`): a 404 in the API's own shape, not Starlette's plain-text one
    (found by schemathesis)."""
    if request.url.path.startswith("/v1/"):
        return JSONResponse(error_object(404, "404 page not found"), status_code=404)
    return error_response(404, "404 page not found")


async def _405(request: Request, exc: Exception) -> Response:
    return error_response(405, "405 method not allowed")


def run_server(config: Config) -> None:
    """Serve until interrupted (SIGINT/SIGTERM stop every runner before exiting)."""
    configure_logging(config)
    cert, key = prepare_to_serve(config)
    log.info("Listening on %s:%d (version %s)", config.host.host, config.host.port, _version())
    log.info("Chat and models page at %s", page_address(config))
    app = create_app(config)
    settings = uvicorn.Config(
        app,
        host=config.host.host,
        port=config.host.port,
        log_level="debug" if config.debug else "warning",
        timeout_graceful_shutdown=5,
        ssl_certfile=cert,
        ssl_keyfile=key,
    )
    _Server(settings, on_exit=lambda: stop_runners(app)).run()


class _Server(uvicorn.Server):
    """uvicorn's server, telling the app as soon as a signal asks it to exit."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self._on_exit()


def stop_runners(app: Starlette) -> None:
    """Begin the scheduler's shutdown now, from a signal handler, rather than after uvicorn
    has waited for open connections: each open stream then loses its runner at once and
    ends with a final `{"error": "server is shutting down"}` line (a request not yet
    answered gets that 503), so the process exits in seconds and leaves no runner behind."""
    loop: asyncio.AbstractEventLoop | None = getattr(app.state, "loop", None)
    if loop is None or loop.is_closed():
        return
    state: ServerState = app.state.ollama

    def begin() -> None:
        app.state.stopping = loop.create_task(state.scheduler.shutdown())

    loop.call_soon_threadsafe(begin)


def configure_logging(config: Config) -> None:
    """Log at the level `OLLAMA_DEBUG` selects: INFO (one line per request, see
    `server.metrics`), or DEBUG with it set (metrics scrapes and runner traffic too)."""
    level = logging.DEBUG if config.debug else logging.INFO
    logging.basicConfig(
        level=level,
        format="time=%(asctime)s level=%(levelname)s source=%(name)s msg=%(message)s",
    )
    logging.getLogger().setLevel(level)
    if not config.debug:  # one line per runner call is noise, and costs a write per request
        logging.getLogger("httpx").setLevel(logging.WARNING)


def page_address(config: Config) -> str:
    """The page's address for a browser on this machine (a wildcard bind is reached on
    loopback), which `ollama serve` prints."""
    host: HostAddress = config.host
    if host.host in {"0.0.0.0", "::", ""}:
        host = dataclasses.replace(host, host="::1" if host.host == "::" else "127.0.0.1")
    return ui.page_url(host.url)


def _version() -> str:
    """Ollama's wording (`version 0.14.0`), with our own version beside it."""
    from ollamapy import OLLAMA_VERSION, __version__

    return f"{OLLAMA_VERSION}, ollamapy {__version__}"
