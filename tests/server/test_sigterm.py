"""SIGTERM to a real `python -m ollamapy serve` with streams open: every stream ends with a
final error line, the process exits within 10 s, and no runner process outlives it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import bundled_model_file
from tests.scheduler.live import CHATML, process_gone, wait_until
from tests.server.conftest import free_port

pytestmark = pytest.mark.integration

SMOL = "smollm2:135m"
EXIT_WITHIN_S = 10.0


def children_of(pid: int) -> set[int]:
    """Processes whose parent is `pid` (the server's runners)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def start_server(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "HOME": str(home),
        "OLLAMA_HOST": f"127.0.0.1:{port}",
        "OLLAMA_MODELS": str(home / "models"),
        "OLLAMA_NUM_PARALLEL": "2",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "ollamapy", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    assert wait_until(lambda: _up(url), timeout=30), "the server did not start"
    return process, url


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def stream(url: str, prompt: str, started: threading.Event, out: list[dict[str, Any]]) -> None:
    """Read one streamed generation into `out`; a cut connection is recorded as a line."""
    body = {"model": SMOL, "prompt": prompt, "options": {"num_predict": 5000, "temperature": 0}}
    try:
        with httpx.stream("POST", f"{url}/api/generate", json=body, timeout=60) as response:
            for line in response.iter_lines():
                if line:
                    out.append(json.loads(line))
                    started.set()
    except httpx.HTTPError as exc:
        out.append({"cut": repr(exc)})


def test_sigterm_ends_open_streams_with_an_error_line_and_leaves_no_runner(
    tmp_path: Path,
) -> None:
    process, url = start_server(tmp_path)
    try:
        modelfile = f"FROM {bundled_model_file('smollm2')}\n{CHATML}"
        created = httpx.post(
            f"{url}/api/create",
            json={"model": SMOL, "modelfile": modelfile, "stream": False},
            timeout=120,
        )
        assert created.status_code == 200, created.text
        outputs: list[list[dict[str, Any]]] = [[], []]
        started = [threading.Event(), threading.Event()]
        threads = [
            threading.Thread(target=stream, args=(url, f"Count to {n}000.", started[i], outputs[i]))
            for i, n in enumerate((5, 7))
        ]
        for thread in threads:
            thread.start()
        assert all(event.wait(60) for event in started), "the streams did not start"
        runners = children_of(process.pid)
        assert runners, "no runner process"
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=EXIT_WITHIN_S + 5)
        took = time.monotonic() - signalled
        assert process.stderr is not None
        log = process.stderr.read().decode(errors="replace")
        assert took < EXIT_WITHIN_S, f"exit took {took:.1f}s; {outputs[0][-2:]}\n{log[-3000:]}"
        for thread in threads:
            thread.join(timeout=10)
        for lines in outputs:
            assert "response" in lines[0]
            assert lines[-1] == {"error": "server is shutting down"}, lines[-3:]
        assert all(wait_until(lambda p=p: process_gone(p), timeout=5) for p in runners)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
