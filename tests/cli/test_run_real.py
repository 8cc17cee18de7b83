"""`ollama run` driven as a person would: a pseudo-terminal against a real server and model."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pexpect
import pytest

from tests.conftest import bundled_model_file
from tests.server.conftest import SMOLLM2_MODELFILE, LiveServer, serve_with_model

pytestmark = pytest.mark.integration

MODEL = "smollm2:135m"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    modelfile = (
        f"FROM {bundled_model_file('smollm2')}\n{SMOLLM2_MODELFILE}"
        "PARAMETER temperature 0\nPARAMETER num_predict 24\n"
    )
    yield from serve_with_model(tmp_path_factory, MODEL, modelfile)


def cli_env(server: LiveServer) -> dict[str, str]:
    return {**os.environ, "OLLAMA_HOST": server.url, "OLLAMA_NOHISTORY": "1", "TERM": "xterm"}


def test_one_shot_with_verbose_stats(server: LiveServer) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ollamapy", "run", MODEL, "Say hello.", "--verbose"],
        env=cli_env(server),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    for label in ("total duration:", "prompt eval count:", "eval count:", "eval rate:"):
        assert label in result.stderr


def test_piped_stdin_is_the_prompt(server: LiveServer) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ollamapy", "run", MODEL],
        input="Name a color.\n",
        env=cli_env(server),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_interactive_repl_chats_and_exits(server: LiveServer) -> None:
    child = pexpect.spawn(
        sys.executable,
        ["-m", "ollamapy", "run", MODEL],
        env=cli_env(server),
        encoding="utf-8",
        timeout=120,
        dimensions=(40, 120),
    )
    try:
        child.expect(">>> ")
        child.sendline("Say hello.")
        child.expect(r"\w+")
        child.expect(">>> ")
        child.sendline("/show parameters")
        child.expect("temperature")
        child.expect(">>> ")
        child.sendline("/bye")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
