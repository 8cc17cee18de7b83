"""The atheris targets in `scripts/fuzz/`: every kept case replays cleanly, and a short
coverage-guided run of each finds nothing. A target lets only its parser's own error types
out (`ModelfileError`, `TemplateError`, `GGUFError`, `InvalidManifestError`, the image's
`BadRequestError`); anything else, a hang or a crash is a finding. Longer runs: see
`scripts/fuzz/harness.py`."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import TESTDATA

ROOT = Path(__file__).resolve().parents[1]
FUZZ = ROOT / "scripts" / "fuzz"
KEPT = TESTDATA / "fuzz"
TARGETS = ("modelfile", "template", "gguf", "manifest", "image")
RUNS = 2000
"""Inputs per target in the suite's run (a few seconds each)."""


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"fuzz_{name}", FUZZ / f"fuzz_{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def kept_cases() -> list[Path]:
    return sorted(path for path in KEPT.glob("*/*") if path.is_file())


@pytest.mark.parametrize(
    "case", kept_cases(), ids=[f"{p.parent.name}/{p.name}" for p in kept_cases()]
)
def test_a_kept_case_passes_its_target(case: Path) -> None:
    target: Callable[[bytes], None] = load(case.parent.name).target
    target(case.read_bytes())


@pytest.mark.parametrize("name", TARGETS)
def test_every_target_has_kept_cases_or_seeds(name: str) -> None:
    module = load(name)
    seeds = list(module.seeds())
    assert seeds
    for seed in seeds:
        module.target(seed)


@pytest.mark.parametrize("name", TARGETS)
def test_a_short_atheris_run_finds_nothing(name: str, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, seed in enumerate(load(name).seeds()):
        (corpus / f"seed-{i}").write_bytes(seed)
    if (KEPT / name).is_dir():  # slow-*: seconds each under instrumentation, replayed above
        for case in (KEPT / name).iterdir():
            if not case.name.startswith("slow-"):
                shutil.copy(case, corpus / case.name)
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    flags = [f"-runs={RUNS}", "-seed=1", "-timeout=60", "-rss_limit_mb=2048", "-max_len=8192"]
    command = [sys.executable, str(FUZZ / f"fuzz_{name}.py"), *flags]
    command += [f"-artifact_prefix={tmp_path}/", str(corpus)]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-4000:]
    assert f"Done {RUNS} runs" in run.stderr
    assert not list(tmp_path.glob("crash-*"))
