"""`ollama create` from a Hugging Face Llama directory, end to end on a real server."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.server.conftest import LiveServer, live_server

pytestmark = pytest.mark.integration

__all__ = ["live_server"]  # the fixture, re-exported for this module

TINY_LLAMA = Path(__file__).resolve().parents[1] / "testdata" / "tiny-llama"


def test_create_from_directory_then_generate(live_server: LiveServer) -> None:
    created = httpx.post(
        f"{live_server.url}/api/create",
        json={"model": "tiny", "modelfile": f"FROM {TINY_LLAMA}\n"},
        timeout=300,
    )
    assert created.status_code == 200, created.text
    statuses = [json.loads(line).get("status") for line in created.text.splitlines()]
    assert "converting model" in statuses
    assert "using autodetected template chatml" in statuses
    assert statuses[-1] == "success"

    shown = httpx.post(f"{live_server.url}/api/show", json={"model": "tiny"}).json()
    assert shown["details"]["format"] == "gguf"
    assert shown["model_info"]["general.architecture"] == "llama"
    assert shown["model_info"]["llama.context_length"] == 256
    assert "completion" in shown["capabilities"]

    answer = httpx.post(
        f"{live_server.url}/api/generate",
        json={
            "model": "tiny",
            "prompt": "What is the capital of France?",
            "stream": False,
            "options": {"temperature": 0, "seed": 1, "num_predict": 8},
        },
        timeout=120,
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["done"] is True
    assert isinstance(body["response"], str) and body["eval_count"] >= 1


def test_create_from_unsupported_directory_is_a_400(
    live_server: LiveServer, tmp_path: Path
) -> None:
    model_dir = tmp_path / "gpt2"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"]}))
    response = httpx.post(
        f"{live_server.url}/api/create",
        json={"model": "bad", "modelfile": f"FROM {model_dir}\n", "stream": False},
        timeout=60,
    )
    assert response.status_code == 400
    assert "unsupported architecture 'GPT2LMHeadModel'" in response.json()["error"]
