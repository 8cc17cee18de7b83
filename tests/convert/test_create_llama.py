"""`ollama create` from a Hugging Face Llama directory, end to end on a real server."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.convert.golden_models import TESTDATA, create_then_generate
from tests.server.conftest import LiveServer, live_server

pytestmark = pytest.mark.integration

__all__ = ["live_server"]  # the fixture, re-exported for this module

TINY_LLAMA = TESTDATA / "tiny-llama"


def test_create_from_directory_then_generate(live_server: LiveServer) -> None:
    statuses, shown = create_then_generate(live_server.url, "tiny", TINY_LLAMA)
    assert "using autodetected template chatml" in statuses
    assert shown["details"]["format"] == "gguf"
    assert shown["model_info"]["general.architecture"] == "llama"
    assert shown["model_info"]["llama.context_length"] == 256
    assert "completion" in shown["capabilities"]


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
