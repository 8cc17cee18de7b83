"""A live server made of the OpenAI routes only, over a fake store and fake native path.

The routes reach the native functions as `inference.prepare_chat` etc., so tests swap them
for fakes that record the native request and yield canned native events.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import openai
import pytest
from starlette.applications import Starlette

from ollamapy.errors import ModelNotFoundError, OllamaError
from ollamapy.server import inference
from ollamapy.server.openai_routes import ROUTES
from ollamapy.types import ModelName
from tests.asgi import start_server
from tests.server.conftest import free_port

Event = dict[str, Any]
MODIFIED = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class FakeEntry:
    name: ModelName
    modified_at: datetime


@dataclass
class FakeStore:
    names: tuple[str, ...] = ("smollm2:135m", "me/mine:latest")

    def list_models(self) -> list[FakeEntry]:
        return [FakeEntry(ModelName.parse(n), MODIFIED) for n in self.names]

    def entry(self, name: ModelName) -> FakeEntry:
        for entry in self.list_models():
            if entry.name.same_as(name):
                return entry
        raise ModelNotFoundError(name.display)


@dataclass
class FakeNative:
    """Stands in for the native inference path: records requests, yields canned events."""

    store: FakeStore
    chat: list[Event] = field(default_factory=list)
    generate: list[Event] = field(default_factory=list)
    fail_after: int | None = None
    """Raise a runner error after this many events (an error mid-stream)."""
    requests: list[Any] = field(default_factory=list)
    closed: int = 0

    async def prepare(self, state: Any, body: Any) -> str:
        self.store.entry(ModelName.parse(body.model))  # unknown model → 404, as natively
        self.requests.append(body)
        return "prepared"

    def chat_events(self, state: Any, prepared: Any, body: Any) -> AsyncIterator[Event]:
        return self._events(self.chat)

    def generate_events(self, state: Any, prepared: Any, body: Any) -> AsyncIterator[Event]:
        return self._events(self.generate)

    async def _events(self, events: list[Event]) -> AsyncIterator[Event]:
        try:
            for n, event in enumerate(events):
                if n == self.fail_after:
                    raise OllamaError("runner crashed")
                yield event
        finally:
            self.closed += 1


@dataclass
class FakeState:
    store: FakeStore


@dataclass
class Server:
    url: str
    native: FakeNative

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key="ollama", max_retries=0)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    store = FakeStore()
    native = FakeNative(store)
    monkeypatch.setattr(inference, "prepare_chat", native.prepare)
    monkeypatch.setattr(inference, "prepare_generate", native.prepare)
    monkeypatch.setattr(inference, "chat_events", native.chat_events)
    monkeypatch.setattr(inference, "generate_events", native.generate_events)
    app = Starlette(routes=ROUTES)
    app.state.ollama = FakeState(store)
    port = free_port()
    started = start_server(app, "127.0.0.1", port)
    try:
        yield Server(started.url, native)
    finally:
        started.stop(timeout=30)
