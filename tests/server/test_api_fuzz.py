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
