"""Fixtures for CLI tests: the fake API and an `invoke` that runs `ollama ARGS...` against it."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from ollamapy.cli.commands import Deps
from ollamapy.cli.main import cli
from tests.cli.cli_fakes import NOW, FakeOllama, Outcome, terminal


@pytest.fixture
def fake() -> FakeOllama:
    return FakeOllama()


@pytest.fixture
def invoke(fake: FakeOllama) -> Iterator[Callable[..., Outcome]]:
    """Run `ollama ARGS...` against `fake`; stdout/stderr come back as text."""

    def run(*args: str, stdin: str | None = None, tty: bool = False, reader: Any = None) -> Outcome:
        term = terminal(stdin, tty)
        deps = Deps(make_client=fake.client, now=lambda: NOW, terminal=term)
        if reader is not None:
            deps.make_reader = lambda history: reader
        result = CliRunner().invoke(cli, list(args), obj=deps, catch_exceptions=False)
        assert isinstance(term.out, io.StringIO) and isinstance(term.err, io.StringIO)
        out = term.out.getvalue() + result.stdout
        err = term.err.getvalue() + result.stderr
        return Outcome(result, out, err)

    yield run
