"""A client that disconnects stops its work in the runner, on every API layer that runs
a completion (whether or not the answer is streamed) and on the embedding routes, through
a real server and runner.

The evidence is the runner's own CPU time (`/proc/<pid>/stat`): a busy runner keeps up to
two cores busy; once the abandoned job is cancelled, it idles.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ollamapy.config import Config, parse_host
from tests.conftest import bundled_model_file
from tests.scheduler.live import LiveApp, create_model, runner_pids, serve_app
from tests.server.conftest import free_port

pytestmark = pytest.mark.integration

COUNTER = "counter:latest"
COUNTING = " ".join(str(n) for n in range(100, 116))
"""A bare count, which the model keeps continuing: no end of text comes before num_predict."""
LONG = 4000
STARTED_CPU_S = 0.2
"""Runner CPU time that shows the job has started (prompt evaluated, tokens coming)."""
BUSY_S = 0.5
"""How long the generating runner is watched before the client leaves."""
WINDOW_S = 0.5
STOP_WITHIN_S = 5.0
"""How long the runner may take to go idle once its client left: the disconnect travels in
milliseconds, but the decode step under way is not interrupted, and on a crowded machine
one step of a two-thread decode can take most of a second."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    """SmolLM2 under a bare template (the prompt is the model's input as is), one slot, and
    its runner already loaded."""
    config = Config(
        host=parse_host(f"127.0.0.1:{free_port()}"),
        models_dir=tmp_path_factory.mktemp("models"),
        num_parallel=1,
    )
    for live in serve_app(config):
        create_model(live.url, COUNTER, bundled_model_file("smollm2"), 'TEMPLATE "{{ .Prompt }}"')
        quick(live, timeout=120)  # loads the runner
        yield live


def quick(live: LiveApp, timeout: float = 10) -> None:
    """A short request must complete at once: the runner's only slot is free."""
    body = {"model": COUNTER, "prompt": COUNTING, "stream": False, "options": {"num_predict": 2}}
    response = httpx.post(f"{live.url}/api/generate", json=body, timeout=timeout)
    assert response.status_code == 200, response.text
    assert response.json()["eval_count"] == 2


def runner_pid(live: LiveApp) -> int:
    models = str(live.app.state.ollama.config.models_dir).encode()
    (pid,) = [p for p in runner_pids() if models in Path(f"/proc/{p}/cmdline").read_bytes()]
    return pid


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process `pid`, all its threads, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def send(url: str, path: str, body: dict[str, Any]) -> socket.socket:
    """Send a request on a raw socket, as a client that will vanish without reading."""
    host, port = url.removeprefix("http://").split(":")
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    sock = socket.create_connection((host, int(port)))
    sock.sendall(head.encode() + payload)
    return sock


def wait_until_started(pid: int, start: float, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while cpu_seconds(pid) - start < STARTED_CPU_S:
        assert time.monotonic() < deadline, "the runner never started the job"
        time.sleep(0.02)


def cpu_rate(pid: int, seconds: float) -> float:
    """The runner's CPU use over the next `seconds`, in cores."""
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / seconds


def goes_idle(pid: int, busy: float) -> tuple[bool, list[float]]:
    """Whether the runner's CPU use falls below a fifth of `busy` for two windows in a row
    within `STOP_WITHIN_S`; and the rates seen."""
    rates: list[float] = []
    deadline = time.monotonic() + STOP_WITHIN_S
    while time.monotonic() < deadline:
        rates.append(round(cpu_rate(pid, WINDOW_S), 2))
        if len(rates) >= 2 and max(rates[-2:]) < busy / 5:
            return True, rates
    return False, rates


OPTIONS = {"num_predict": LONG, "temperature": 0, "stop": []}
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "generate": ("/api/generate", {"prompt": COUNTING, "options": OPTIONS}),
    "chat": (
        "/api/chat",
        {"messages": [{"role": "user", "content": COUNTING}], "options": OPTIONS},
    ),
    "openai-chat": (
        "/v1/chat/completions",
        {"messages": [{"role": "user", "content": COUNTING}], "max_tokens": LONG, "temperature": 0},
    ),
    "openai-completion": (
        "/v1/completions",
        {"prompt": COUNTING, "max_tokens": LONG, "temperature": 0},
    ),
}


def abandon(server: LiveApp, path: str, body: dict[str, Any]) -> None:
    """Send `body`, close the client once the runner is busy with it, and check that the
    runner's CPU use soon falls to near nothing (compared with its own use while busy:
    the machine may be shared), then that its only slot serves the next request."""
    pid = runner_pid(server)
    start = cpu_seconds(pid)
    client = send(server.url, path, {"model": COUNTER, **body})
    wait_until_started(pid, start)
    busy = cpu_rate(pid, BUSY_S)
    assert busy > 0.1, f"the runner was not busy with the request ({busy:.2f} cores)"
    client.close()
    idle, rates = goes_idle(pid, busy)
    assert idle, f"the runner kept using {rates} cores after its client left ({busy:.2f} before)"
    quick(server, timeout=60)


@pytest.mark.parametrize("case", CASES)
def test_a_client_that_leaves_a_whole_answer_stops_its_generation(
    server: LiveApp, case: str
) -> None:
    path, body = CASES[case]
    abandon(server, path, {"stream": False, **body})


TEXTS = [f"Note {n}." for n in range(2000)]


@pytest.mark.parametrize("path", ["/api/embed", "/v1/embeddings"])
def test_a_client_that_leaves_a_large_embedding_batch_stops_it(server: LiveApp, path: str) -> None:
    """The runner stops before the next batch of inputs, not after the last one."""
    abandon(server, path, {"input": TEXTS})
