"""Schemathesis against `/openapi.json` on a live server with the scripted runner: a short,
seeded run of `scripts/fuzz/api.py` (no 5xx, every answer in its documented status, media
type and error shape). The longer campaign is that script with more examples."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_schemathesis_finds_no_server_error_or_undocumented_answer(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    script = ROOT / "scripts" / "fuzz" / "api.py"
    command = [sys.executable, str(script), "--max-examples", "3", "--seed", "7"]
    run = subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "failed" not in run.stdout.split("SUMMARY")[-1]


def test_a_context_of_tokens_outside_the_vocabulary_is_a_400(tmp_path: Path) -> None:
    """Found by schemathesis: the scripted runner then answered with a MemoryError (a 500);
    it now refuses such ids as the real runner does, and the 400 reaches the client."""
    import httpx

    from tests.fakes import MODEL, Script, serve_scripted

    for server in serve_scripted(tmp_path, Script()):
        body = {"model": MODEL, "prompt": "hi", "context": [5, -1385, 2**60], "stream": False}
        answer = httpx.post(f"{server.url}/api/generate", json=body)
        assert answer.status_code == 400
        assert answer.json() == {"error": "invalid token id: -1385"}


def test_a_path_with_a_newline_gets_ollamas_404(tmp_path: Path) -> None:
    """Found by schemathesis: no route matches a path with a newline inside (the catch-all's
    `.*` stops there), and Starlette answered its own plain-text 404."""
    import httpx

    from tests.fakes import Script, serve_scripted

    for server in serve_scripted(tmp_path, Script()):
        for path in ("/ui/a%0Ab", "/api/x%0Ay"):
            answer = httpx.get(f"{server.url}{path}")
            assert answer.status_code == 404, path
            assert answer.json() == {"error": "404 page not found"}, path
        answer = httpx.get(f"{server.url}/v1/models/a%0Ab")
        assert answer.status_code == 404
        assert answer.json()["error"]["message"] == "404 page not found"
