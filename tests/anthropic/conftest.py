"""`/v1/messages` through the real app (`create_app`: real store, scheduler, prompt
rendering) with a scripted runner behind the Runner Protocol (`tests.fakes`), driven by the
official `anthropic` SDK over real HTTP. Tests say what the "model" writes and check both
what the client got and what reached the runner (`server.sent()`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anthropic
import pytest

from tests.fakes import Script, serve_scripted
from tests.openai.conftest import Server as ScriptedApp


class Server(ScriptedApp):
    """The scripted app, with an Anthropic client."""

    def anthropic(self) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.url, api_key="ollama", max_retries=0)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    for scripted in serve_scripted(tmp_path, Script()):
        yield Server(scripted, tmp_path)
