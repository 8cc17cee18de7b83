"""A real server on a free loopback port, driven by the official `ollama` client."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import ollama
import pytest
import uvicorn

from ollamapy.config import Config
from ollamapy.server.app import create_app


@dataclass
class LiveServer:
    url: str
    config: Config

    @property
    def models_dir(self) -> Path:
        return self.config.models_dir

    def client(self) -> ollama.Client:
        return ollama.Client(host=self.url)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve(config: Config) -> Iterator[LiveServer]:
    """Run the app with uvicorn in a thread until the test ends."""
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config),
            host=config.host.host,
            port=config.host.port,
            log_level="warning",
            lifespan="on",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("server did not start")
        time.sleep(0.02)
    try:
        yield LiveServer(config.host.url, config)
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def live_server(hermetic_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{free_port()}")
    yield from serve(Config.from_env())
