"""A fake Ollama API for CLI tests: a route table of canned answers behind an httpx transport.

A uniquely named module (not conftest) so test files can import it whatever else is collected.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from click.testing import Result

from ollamapy import OLLAMA_VERSION
from ollamapy.api.client import Client
from ollamapy.cli.run import Terminal

NOW = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)
DIGEST = "sha256:" + "a80c4f17acd5" + "0" * 52

Answer = httpx.Response | Callable[[Any], httpx.Response]


def ndjson(*parts: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, content="".join(json.dumps(p) + "\n" for p in parts).encode())


@dataclass
class FakeOllama:
    """Answers `(method, path)` from `routes`; records `(method, path, body)` for every call."""

    routes: dict[tuple[str, str], Answer] = field(default_factory=dict)
    calls: list[tuple[str, str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.routes.setdefault(("HEAD", "/"), httpx.Response(200))
        self.routes.setdefault(
            ("GET", "/api/version"), httpx.Response(200, json={"version": OLLAMA_VERSION})
        )

    def handle(self, request: httpx.Request) -> httpx.Response:
        content = request.read()
        try:
            body = json.loads(content) if content else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = content
        self.calls.append((request.method, request.url.path, body))
        answer = self.routes.get((request.method, request.url.path))
        if answer is None:
            return httpx.Response(404, json={"error": "not found"})
        return answer(body) if callable(answer) else answer

    def client(self) -> Client:
        return Client("127.0.0.1:11434", transport=httpx.MockTransport(self.handle))

    def bodies(self, method: str, path: str) -> list[Any]:
        return [body for m, p, body in self.calls if (m, p) == (method, path)]


def terminal(stdin: str | None = None, tty: bool = False) -> Terminal:
    """A terminal whose stdout/stderr are buffers, read back by `invoke`."""
    return Terminal(
        out=io.StringIO(),
        err=io.StringIO(),
        stdin=io.StringIO(stdin or ""),
        stdin_tty=stdin is None and tty,
        stdout_tty=tty,
        width=lambda: 80,
    )


@dataclass
class Outcome:
    result: Result
    out: str
    err: str

    @property
    def exit_code(self) -> int:
        return self.result.exit_code
