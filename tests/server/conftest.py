"""A real server on a free loopback port, driven by the official `ollama` client."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import ollama
import pytest

from ollamapy.config import Config, parse_host
from tests.scheduler.live import CHATML, serve_app


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
    for live in serve_app(config):
        yield LiveServer(live.url, config)


@pytest.fixture
def live_server(hermetic_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{free_port()}")
    yield from serve(Config.from_env())


SMOLLM2_MODELFILE = CHATML


def serve_with_model(
    tmp_path_factory: pytest.TempPathFactory, name: str, modelfile: str, num_parallel: int = 0
) -> Iterator[LiveServer]:
    """A live server on a fresh store with one model created through `/api/create`."""
    import httpx

    models = tmp_path_factory.mktemp("models")
    host = parse_host(f"127.0.0.1:{free_port()}")
    config = Config(host=host, models_dir=models, num_parallel=num_parallel)
    for live in serve(config):
        created = httpx.post(
            f"{live.url}/api/create",
            json={"model": name, "modelfile": modelfile, "stream": False},
            timeout=300,
        )
        assert created.status_code == 200, created.text
        yield live
