"""`OLLAMA_SHARE_CORES`: runners of models busy at once share the cores unless turned off."""

from __future__ import annotations

import pytest

from ollamapy.config import Config


@pytest.mark.parametrize(
    ("value", "shared"),
    [(None, True), ("", True), ("1", True), ("true", True), ("0", False), ("false", False)],
)
def test_share_cores_is_on_by_default_and_can_be_turned_off(
    value: str | None, shared: bool
) -> None:
    env = {} if value is None else {"OLLAMA_SHARE_CORES": value}
    assert Config.from_env(env).share_cores is shared
