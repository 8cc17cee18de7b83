"""The server's long-lived parts, created once per app and reached from each request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from ollamapy.config import Config
from ollamapy.scheduler import Scheduler
from ollamapy.store import Store


@dataclass
class ServerState:
    config: Config
    store: Store
    scheduler: Scheduler[Any]


def state_of(request: Request) -> ServerState:
    state: ServerState = request.app.state.ollama
    return state
