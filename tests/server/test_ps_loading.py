"""`/api/ps` shows runners still loading, with their progress, and each model's queue
(Ollama's issue #2004: a long load was invisible until it finished)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ollamapy.config import Config, parse_host
from ollamapy.scheduler import ModelLoad, Scheduler
from tests.fakes import MODEL, TRAINED_CONTEXT, Script, ScriptedRunner
from tests.ggufs import write_tiny_gguf
from tests.scheduler.live import CHATML, LiveApp, create_model, serve_app, wait_until
from tests.server.conftest import free_port


@dataclass
class SlowLoads:
    """A factory whose loads report 40% and then wait for the test to let them finish."""

    script: Script
    release: threading.Event
    scheduler: Scheduler[ScriptedRunner] | None = None

    async def __call__(self, load: ModelLoad) -> ScriptedRunner:
        assert self.scheduler is not None
        self.scheduler.report_progress(load.key, 0.4)
        while not self.release.is_set():
            await asyncio.sleep(0.01)
        return ScriptedRunner(self.script, load)


@pytest.fixture
def slow(tmp_path: Path) -> Iterator[tuple[LiveApp, SlowLoads]]:
    loads = SlowLoads(Script(), threading.Event())
    loads.release.set()  # creating the model loads nothing, but be safe
    scheduler: Scheduler[ScriptedRunner] = Scheduler(loads, default_keep_alive=300)
    loads.scheduler = scheduler
    config = Config(host=parse_host(f"127.0.0.1:{free_port()}"), models_dir=tmp_path / "models")
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf", context_length=TRAINED_CONTEXT)
    for live in serve_app(config, scheduler):
        create_model(live.url, MODEL, gguf, CHATML)
        loads.release.clear()
        try:
            yield live, loads
        finally:
            loads.release.set()


def chat(url: str) -> httpx.Response:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": False}
    return httpx.post(f"{url}/api/chat", json=body, timeout=30)


def ps(url: str) -> list[dict[str, object]]:
    models: list[dict[str, object]] = httpx.get(f"{url}/api/ps").json()["models"]
    return models


def test_a_loading_model_is_listed_with_its_progress_and_queue(
    slow: tuple[LiveApp, SlowLoads],
) -> None:
    live, loads = slow
    with ThreadPoolExecutor(2) as pool:
        answers: list[Future[httpx.Response]] = [pool.submit(chat, live.url) for _ in range(2)]
        assert wait_until(lambda: len(ps(live.url)) == 1 and ps(live.url)[0]["queue_length"] == 2)
        (starting,) = ps(live.url)
        assert starting["name"] == MODEL
        assert starting["load_progress"] == 0.4
        assert "expires_at" not in starting
        loads.release.set()
        assert [a.result().status_code for a in answers] == [200, 200]
    (loaded,) = ps(live.url)
    assert loaded["queue_length"] == 0
    assert "load_progress" not in loaded
    assert "expires_at" in loaded


def test_a_keep_alive_of_millions_of_years_is_shown_as_forever(tmp_path: Path) -> None:
    """Found by schemathesis: /api/ps failed with a 500 (no date holds that year)."""
    from tests.fakes import serve_scripted

    for server in serve_scripted(tmp_path, Script()):
        body = {"model": MODEL, "prompt": "hi", "stream": False, "keep_alive": 9e15}
        assert httpx.post(f"{server.url}/api/generate", json=body).status_code == 200
        answer = httpx.get(f"{server.url}/api/ps")
        assert answer.status_code == 200, answer.text
        assert answer.json()["models"][0]["expires_at"] == "2318-01-01T00:00:00Z"
