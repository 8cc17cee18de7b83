"""Reloads under concurrency through a real server and real runner processes.

Requests for one model that want different load options (here `num_ctx`) arrive together,
some of their clients give up; none may fail, and afterwards every runner process of the
server is one that `/api/ps` lists.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from ollamapy.config import Config, parse_host
from tests.conftest import bundled_model_file
from tests.scheduler.live import CHATML, LiveApp, create_model, runner_pids, serve_app
from tests.server.conftest import free_port

pytestmark = pytest.mark.integration

MODEL = "smollm2:135m"
CONTEXTS = (1024, 2048)


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
