"""The CLI's tables: `ollama ps` for a runner that is still loading."""

from __future__ import annotations

from ollamapy.cli.tables import ps_rows


def test_ps_shows_a_starting_runner_as_loading_with_its_progress() -> None:
    starting = {
        "name": "big:latest",
        "digest": "a80c4f17acd5" + "0" * 52,
        "size": 2048,
        "size_vram": 0,
        "context_length": 4096,
        "load_progress": 0.42,
    }
    (row,) = ps_rows([starting])
    assert row[0] == "big:latest"
    assert row[-1] == "Loading 42%"
