"""The Starlette application and `ollama serve`.

`create_app` wires the store, the scheduler (with the runner factory injected) and the
routes; `run_server` serves it with uvicorn on `OLLAMA_HOST`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ollamapy.config import Config, HostAddress
from ollamapy.errors import NotFoundError, OllamaError
from ollamapy.scheduler import Scheduler
from ollamapy.server import (
    anthropic_routes,
    embed,
    inference,
    models,
    openai_routes,
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

    responses = ResponseStore(config.models_dir.parent / "responses")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        _prepare_store(state)
        try:
            yield
        finally:
            await state.scheduler.shutdown()
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
            *ui.ROUTES,
            Route("/{path:path}", not_found, methods=_ALL_METHODS),
        ],
        middleware=[
            Middleware(
                EdgeGuard,
                origins=config.allowed_origins,
                loopback_only=config.host.is_loopback,
            ),
            Middleware(
                KeyGuard, keys=KeySource(config.keys_file), required=config.api_keys_required
            ),
        ],
        exception_handlers={OllamaError: handle_errors, Exception: handle_errors, 405: _405},
        lifespan=lifespan,
    )
    app.state.ollama = state
    app.state.responses = responses
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


async def _405(request: Request, exc: Exception) -> Response:
    return error_response(405, "405 method not allowed")


def run_server(config: Config) -> None:
    """Serve until interrupted (SIGINT/SIGTERM stop every runner before exiting)."""
    logging.basicConfig(
        level=logging.DEBUG if config.debug else logging.INFO,
        format="time=%(asctime)s level=%(levelname)s source=%(name)s msg=%(message)s",
    )
    if not config.debug:  # one line per runner call is noise, and costs a write per request
        logging.getLogger("httpx").setLevel(logging.WARNING)
    cert, key = prepare_to_serve(config)
    log.info("Listening on %s:%d (version %s)", config.host.host, config.host.port, _version())
    log.info("Chat and models page at %s", page_address(config))
    uvicorn.run(
        create_app(config),
        host=config.host.host,
        port=config.host.port,
        log_level="debug" if config.debug else "warning",
        timeout_graceful_shutdown=5,
        ssl_certfile=cert,
        ssl_keyfile=key,
    )


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
