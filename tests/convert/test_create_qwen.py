"""`ollama create` from a Hugging Face Qwen3 directory, end to end on a real server."""

from __future__ import annotations

import pytest

from tests.convert.golden_models import TESTDATA, create_then_generate
from tests.server.conftest import LiveServer, live_server

pytestmark = pytest.mark.integration

__all__ = ["live_server"]  # the fixture, re-exported for this module

TINY_QWEN3 = TESTDATA / "tiny-qwen3"


def test_create_from_qwen3_directory_then_generate(live_server: LiveServer) -> None:
    _statuses, shown = create_then_generate(live_server.url, "tiny-qwen3", TINY_QWEN3)
    assert shown["model_info"]["general.architecture"] == "qwen3"
    assert shown["model_info"]["qwen3.attention.key_length"] == 32
