"""A live server whose app (and so whose scheduler) the test holds, plus process helpers.

`tests.server.conftest.serve` wraps this for tests that only need the URL; the concurrency
and fault tests also need the app's scheduler (to wrap its runner factory, to read runner
pids) and need to stop the server on purpose.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette

from ollamapy.config import Config
from ollamapy.scheduler import Scheduler
from ollamapy.server.app import create_app
from tests.asgi import start_server

CHATML = (
    'TEMPLATE """{{- range .Messages }}<|im_start|>{{ .Role }}\n'
    '{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"""\n'
    'PARAMETER stop "<|im_end|>"\n'
)


@dataclass
class LiveApp:
    url: str
    app: Starlette
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def scheduler(self) -> Scheduler[Any]:
        scheduler: Scheduler[Any] = self.app.state.ollama.scheduler
        return scheduler

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)


def serve_app(
    config: Config, scheduler: Scheduler[Any] | None = None
) -> Generator[LiveApp, None, None]:
    """Run `create_app(config, scheduler)` with uvicorn in a thread until the test ends."""
    app = create_app(config, scheduler)
    started = start_server(app, config.host.host, config.host.port, lifespan="on")
    server, thread = started.server, started.thread
    live = LiveApp(config.host.url, app, server, thread)
    try:
        yield live
    finally:
        live.stop()


def create_model(url: str, name: str, path: Path, extra: str = "") -> None:
    """Create `name` through `/api/create` from a local GGUF file."""
    response = httpx.post(
        f"{url}/api/create",
        json={"model": name, "modelfile": f"FROM {path}\n{extra}", "stream": False},
        timeout=120,
    )
    assert response.status_code == 200, response.text


def stream_lines(url: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """POST a streaming request and return every NDJSON object it produced."""
    with httpx.stream("POST", f"{url}/api/generate", json=body, timeout=180) as response:
        assert response.status_code == 200, response.read()
        return [json.loads(line) for line in response.iter_lines() if line]


def runner_pids() -> set[int]:
    """Live runner processes started by this (test) process."""
    pids: set[int] = set()
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        state, parent = fields[0], int(fields[1])
        if parent == me and state != "Z" and b"ollamapy.runner" in cmdline:
            pids.add(int(entry.name))
    return pids


def process_gone(pid: int) -> bool:
    """Whether `pid` has exited (a zombie counts: it holds no memory and runs nothing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.1) -> bool:
    """Poll `predicate()` until it is true or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
