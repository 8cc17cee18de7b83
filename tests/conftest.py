"""Shared test set-up: every test is hermetic, with HOME and OLLAMA_MODELS under tmp_path."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTDATA = Path(__file__).resolve().parent / "testdata"
"""Data the tests read: tiny model directories, golden outputs, conformance cases (in-repo)."""
CONFORMANCE = TESTDATA / "conformance" / "templates"
"""Ollama's named prompt templates and their expected renderings (see CASES.md there)."""
BUNDLE_CACHE = Path(os.environ.get("OLLAMAPY_CACHE", Path.home() / ".cache" / "ollamapy"))
"""Where `scripts/bundle_models.py fetch` put the real model files (read before HOME moves)."""


@pytest.fixture(autouse=True)
def hermetic_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point HOME and OLLAMA_MODELS into tmp_path and clear every other OLLAMA_* variable."""
    for key in list(os.environ):
        if key.startswith("OLLAMA_"):
            monkeypatch.delenv(key)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("OLLAMA_MODELS", str(home / ".ollama" / "models"))
    yield home


def bundled_model_file(key: str) -> Path:
    """Path of a bundled real model (fetched by the install step); fail loudly if absent."""
    names = {
        "smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "gemma3": "gemma-3-270m-q4_k_m.gguf",
    }
    path = BUNDLE_CACHE / "models" / names[key]
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `python scripts/bundle_models.py fetch` first")
    return path
