"""OLLAMA_DRAFT_MAX: the runners' default for the `draft_max` option, down to their argv."""

from __future__ import annotations

import pytest

from ollamapy.config import Config
from ollamapy.errors import BadRequestError
from ollamapy.llm import RunnerSpec
from ollamapy.runner.launch import LaunchArgs


def test_on_by_default_with_sixteen_tokens() -> None:
    assert Config.from_env({}).draft_max == 16


def test_set_and_turned_off() -> None:
    assert Config.from_env({"OLLAMA_DRAFT_MAX": "4"}).draft_max == 4
    assert Config.from_env({"OLLAMA_DRAFT_MAX": "0"}).draft_max == 0


def test_a_bad_value_is_refused() -> None:
    with pytest.raises(BadRequestError, match="OLLAMA_DRAFT_MAX"):
        Config.from_env({"OLLAMA_DRAFT_MAX": "-1"})


def test_it_reaches_the_runner_command_line() -> None:
    argv = RunnerSpec("/m.gguf", draft_max=0).launch_args().to_argv()
    assert argv[argv.index("--draft-max") + 1] == "0"
    assert LaunchArgs.from_argv(argv).draft_max == 0
