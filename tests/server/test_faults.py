"""Runner crashes, broken models and shutdown, through a real server and real runners."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ollamapy.config import Config, parse_host
from ollamapy.scheduler import MemoryPool, MemorySnapshot, Scheduler
from ollamapy.scheduler.memory import MIB, GGUFEstimator
from ollamapy.server.runners import runner_factory
from tests.conftest import bundled_model_file
from tests.ggufs import write_tiny_gguf
from tests.scheduler.live import (
    CHATML,
    LiveApp,
    create_model,
    process_gone,
    runner_pids,
    serve_app,
    stream_lines,
    wait_until,
)
from tests.server.conftest import free_port

pytestmark = pytest.mark.integration

SMOL = "smollm2:135m"
BROKEN = "broken:latest"
LONG = {"temperature": 0, "num_predict": 2000, "seed": 1}


def config_for(models: Path) -> Config:
    return Config(
        host=parse_host(f"127.0.0.1:{free_port()}"), models_dir=models, context_length=2048
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    """SmolLM2, and a model whose GGUF is well formed but that llama.cpp cannot load."""
    config = config_for(tmp_path_factory.mktemp("models"))
    broken = write_tiny_gguf(tmp_path_factory.mktemp("broken") / "broken.gguf")
    for live in serve_app(config):
        create_model(live.url, SMOL, bundled_model_file("smollm2"), CHATML)
        create_model(live.url, BROKEN, broken)
        yield live


def pids_of(live: LiveApp) -> set[int]:
    """This server's runners (each runner's command line names a blob in its models dir)."""
    models = str(live.app.state.ollama.config.models_dir).encode()
    found = set()
    for pid in runner_pids():
        try:
            if models in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.add(pid)
        except OSError:
            continue
    return found


def generate(url: str, prompt: str = "Say hello.") -> httpx.Response:
    body = {"model": SMOL, "prompt": prompt, "stream": False, "options": {"num_predict": 8}}
    return httpx.post(f"{url}/api/generate", json=body, timeout=120)


def loaded_pid(live: LiveApp) -> int:
    response = generate(live.url)
    assert response.status_code == 200, response.text
    (pid,) = pids_of(live)
    return pid


def test_runner_killed_mid_stream_ends_with_an_error_line(server: LiveApp) -> None:
    pid = loaded_pid(server)
    body = {"model": SMOL, "prompt": "Tell me a very long story.", "options": LONG}
    lines: list[dict[str, object]] = []
    with httpx.stream("POST", f"{server.url}/api/generate", json=body, timeout=120) as response:
        assert response.status_code == 200
        for raw in response.iter_lines():
            if not raw:
                continue
            lines.append(json.loads(raw))
            if len(lines) == 2:
                os.kill(pid, signal.SIGKILL)
    assert "error" in lines[-1], lines[-1]
    assert "terminated" in str(lines[-1]["error"]) or "killed" in str(lines[-1]["error"])
    assert not any(line.get("done") for line in lines)
    again = generate(server.url)
    assert again.status_code == 200 and again.json()["done"] is True
    assert pids_of(server) and pid not in pids_of(server)


def test_request_after_the_runner_died_gets_a_fresh_runner(server: LiveApp) -> None:
    pid = loaded_pid(server)
    os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: process_gone(pid))
    lines = stream_lines(server.url, {"model": SMOL, "prompt": "Hi", "options": {"num_predict": 4}})
    assert lines[-1]["done"] is True and "error" not in lines[-1]
    (fresh,) = pids_of(server)
    assert fresh != pid
    models = httpx.get(f"{server.url}/api/ps").json()["models"]
    assert [m["name"] for m in models] == [SMOL]


def test_killed_idle_runner_is_dropped_from_ps(server: LiveApp) -> None:
    pid = loaded_pid(server)
    os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: process_gone(pid))
    assert wait_until(lambda: httpx.get(f"{server.url}/api/ps").json()["models"] == [])


@pytest.mark.parametrize("stream", [False, True])
def test_model_that_fails_to_load_is_a_clear_500(server: LiveApp, stream: bool) -> None:
    body = {"model": BROKEN, "prompt": "Hi", "stream": stream}
    response = httpx.post(f"{server.url}/api/generate", json=body, timeout=120)
    assert response.status_code == 500, response.text
    error = response.json()["error"]
    assert "llama runner process has terminated" in error or "load" in error
    assert all(m["name"] != BROKEN for m in httpx.get(f"{server.url}/api/ps").json()["models"])
    assert generate(server.url).status_code == 200  # the server is still fine


def test_shutdown_leaves_no_runner_processes(tmp_path: Path) -> None:
    config = config_for(tmp_path / "models")
    serving = serve_app(config)
    live = next(serving)
    create_model(live.url, SMOL, bundled_model_file("smollm2"), CHATML)
    pid = loaded_pid(live)
    live.stop()
    assert not live.thread.is_alive()
    assert wait_until(lambda: process_gone(pid), timeout=15), f"runner {pid} outlived the server"
    serving.close()


def test_model_larger_than_memory_fails_at_once_with_ollamas_message(tmp_path: Path) -> None:
    config = config_for(tmp_path / "models")
    tiny = MemorySnapshot(MemoryPool(64 * MIB, 64 * MIB))  # smaller than SmolLM2's weights
    scheduler = Scheduler(
        runner_factory(config),
        default_keep_alive=config.keep_alive,
        estimator=GGUFEstimator(),
        memory=lambda: tiny,
    )
    for live in serve_app(config, scheduler):
        create_model(live.url, SMOL, bundled_model_file("smollm2"), CHATML)
        response = generate(live.url)
        assert response.status_code == 500
        assert response.json()["error"].startswith("model requires more system memory (")
        assert "than is available (64.0 MiB)" in response.json()["error"]
        assert not pids_of(live)
