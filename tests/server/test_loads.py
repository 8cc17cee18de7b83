"""Runner loads through a real server and real runner processes: reloads under
concurrency, the num_ctx cap, and load options no runner can start with.

Requests for one model that want different load options (here `num_ctx`) arrive together,
some of their clients give up; none may fail, and afterwards every runner process of the
server is one that `/api/ps` lists.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from ollamapy.config import Config, parse_host
from ollamapy.server.loads import fit_to_model, trained_context
from ollamapy.types import RunnerOptions
from tests.conftest import bundled_model_file
from tests.ggufs import write_tiny_gguf
from tests.scheduler.live import CHATML, LiveApp, create_model, runner_pids, serve_app
from tests.server.conftest import free_port

MODEL = "smollm2:135m"
CONTEXTS = (1024, 2048)


# -- the model's limits (a tiny GGUF trained on 2048 tokens) --------------------------------


def test_trained_context_is_read_from_the_gguf_header(tmp_path: Path) -> None:
    assert trained_context(write_tiny_gguf(tmp_path / "tiny.gguf")) == 2048


def test_a_file_that_is_not_gguf_has_no_trained_context(tmp_path: Path) -> None:
    path = tmp_path / "junk"
    path.write_bytes(b"not a model")
    assert trained_context(path) is None
    assert fit_to_model(RunnerOptions(num_ctx=10**7), path).num_ctx == 10**7  # runner decides


@pytest.mark.parametrize(
    ("asked", "got"),
    [(1, 4), (3, 4), (4, 4), (1024, 1024), (2048, 2048), (4096, 2048), (10**7, 2048)],
)
def test_num_ctx_is_kept_between_4_and_the_trained_context(
    tmp_path: Path, asked: int, got: int
) -> None:
    path = write_tiny_gguf(tmp_path / "tiny.gguf")
    options = RunnerOptions(num_ctx=asked, num_batch=64)
    assert fit_to_model(options, path) == RunnerOptions(num_ctx=got, num_batch=64)


def test_the_cap_is_logged_once_per_model_and_size(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_tiny_gguf(tmp_path / "tiny.gguf")
    for _ in range(3):
        fit_to_model(RunnerOptions(num_ctx=9999), path)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "num_ctx=9999 n_ctx_train=2048" in warnings[0]


# -- through a real server ------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    config = Config(
        host=parse_host(f"127.0.0.1:{free_port()}"),
        models_dir=tmp_path_factory.mktemp("models"),
        num_parallel=1,
    )
    for live in serve_app(config):
        create_model(live.url, MODEL, bundled_model_file("smollm2"), CHATML)
        yield live


def generate(url: str, num_ctx: int, timeout: float = 60) -> tuple[int, list[str]]:
    """One streamed generate: its status and its lines (an error would be one of them)."""
    body: dict[str, Any] = {
        "model": MODEL,
        "prompt": "Say hi.",
        "options": {"num_ctx": num_ctx, "num_predict": 2, "temperature": 0},
    }
    with httpx.stream("POST", f"{url}/api/generate", json=body, timeout=timeout) as response:
        return response.status_code, [line for line in response.iter_lines() if line]


def give_up(url: str, num_ctx: int) -> None:
    """A client that leaves before its answer comes (while the model reloads)."""
    with contextlib.suppress(httpx.TimeoutException):
        generate(url, num_ctx, timeout=0.05)


def settle(live: LiveApp, timeout: float = 15.0) -> None:
    """Wait until no runner is starting and none is in use (gone clients finish too)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        scheduler = live.scheduler
        if not scheduler.starting() and all(e.idle for e in scheduler.loaded()):
            return
        time.sleep(0.1)
    raise AssertionError("the scheduler did not settle")


@pytest.mark.integration
def test_concurrent_reloads_fail_no_request_and_leave_no_unlisted_runner(
    server: LiveApp,
) -> None:
    status, _ = generate(server.url, 4096)  # loaded under settings none of the others want
    assert status == 200
    with ThreadPoolExecutor(8) as pool:
        answers = [pool.submit(generate, server.url, CONTEXTS[i % 2]) for i in range(6)]
        leavers = [pool.submit(give_up, server.url, CONTEXTS[i % 2]) for i in range(2)]
        results = [answer.result() for answer in answers]
        for leaver in leavers:
            leaver.result()
    for status, lines in results:
        assert status == 200, lines
        assert '"error"' not in lines[-1] and '"done":true' in lines[-1].replace(" ", "")
    settle(server)
    pids = runner_pids()
    listed = httpx.get(f"{server.url}/api/ps").json()["models"]
    assert len(pids) == len(listed) == 1
    assert pids == {entry.runner.pid for entry in server.scheduler.loaded()}
    assert listed[0]["context_length"] in CONTEXTS


def ps(url: str) -> list[dict[str, Any]]:
    models: list[dict[str, Any]] = httpx.get(f"{url}/api/ps").json()["models"]
    return models


TRAINED_CONTEXT = 8192
"""SmolLM2's `llama.context_length`."""


@pytest.mark.integration
def test_num_ctx_above_the_trained_context_is_capped(server: LiveApp) -> None:
    status, lines = generate(server.url, 65536)
    assert status == 200, lines
    (entry,) = ps(server.url)
    assert entry["context_length"] == TRAINED_CONTEXT
    assert entry["size"] < 1 << 30  # memory planned for 8192 tokens, not 65536 (over 2 GiB)
    pids = runner_pids()
    status, lines = generate(server.url, 10_000_000)  # the same cap: the same runner
    assert status == 200, lines
    assert runner_pids() == pids and len(ps(server.url)) == 1


IMPOSSIBLE = [
    pytest.param({key: value}, key, id=f"{key}={value}")
    for key, value in [
        ("num_ctx", 0),
        ("num_ctx", -4096),
        ("num_batch", 0),
        ("num_batch", -1),
        ("num_thread", -2),
        ("num_gpu", -2),
        ("main_gpu", -1),
    ]
]


@pytest.mark.integration
@pytest.mark.parametrize("route", ["generate", "chat"])
@pytest.mark.parametrize(("options", "named"), IMPOSSIBLE)
def test_impossible_load_options_are_a_400_that_keeps_the_runner(
    server: LiveApp, route: str, options: dict[str, int], named: str
) -> None:
    loaded = httpx.post(  # no prompt: load only
        f"{server.url}/api/generate",
        json={"model": MODEL, "options": {"num_ctx": 2048}},
        timeout=60,
    )
    assert loaded.status_code == 200, loaded.text
    pids = runner_pids()
    body: dict[str, Any] = {"model": MODEL, "options": options, "stream": False}
    if route == "chat":
        body["messages"] = [{"role": "user", "content": "hi"}]
    else:
        body["prompt"] = "hi"
    response = httpx.post(f"{server.url}/api/{route}", json=body, timeout=60)
    assert response.status_code == 400, response.text
    assert named in response.json()["error"]
    assert runner_pids() == pids and len(ps(server.url)) == 1


@pytest.mark.integration
@pytest.mark.parametrize("num_ctx", [4, 16, 32])
def test_a_prompt_longer_than_a_tiny_context_is_truncated_not_a_crash(
    server: LiveApp, num_ctx: int
) -> None:
    """llama.cpp lowers a context's batch size to its context size, and a decode of more
    tokens aborts the whole runner: the engine batches no more than the context takes."""
    prompt = " ".join(f"word{i}" for i in range(40))
    body = {
        "model": MODEL,
        "prompt": prompt,
        "raw": True,
        "stream": False,
        "options": {"num_ctx": num_ctx, "num_predict": 3, "temperature": 0},
    }
    response = httpx.post(f"{server.url}/api/generate", json=body, timeout=120)
    assert response.status_code == 200, response.text
    assert response.json()["done"] is True
