"""`ollama serve` prints the page's address, and that address answers with the page."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.registry.servers import free_port, wait_until_up

REPO = Path(__file__).resolve().parents[2]


def test_serve_prints_the_pages_address_and_it_answers(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "OLLAMA_HOST": f"127.0.0.1:{port}", "OLLAMA_MODELS": str(tmp_path / "m")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "ollamapy", "serve"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
        try:
            wait_until_up(f"http://127.0.0.1:{port}/api/version", deadline_s=60)
            page = httpx.get(f"http://127.0.0.1:{port}/ui/", timeout=10)
        finally:
            process.terminate()
            process.wait(timeout=30)
    address = f"http://127.0.0.1:{port}/ui/"
    assert f"Chat and models page at {address}" in log_path.read_text()
    assert page.status_code == 200
    assert "<title>Ollama</title>" in page.text
