"""The /v1 routes through the real app (`create_app`: real store, scheduler, prompt rendering)
with a scripted runner behind the Runner Protocol (`tests.fakes`), nothing patched inside.

Tests say what the "model" writes (`server.script.chunks`) and check both what the client
got and what reached the runner (`server.script.requests`: the rendered prompt and the
sampling options). Models other than the scripted one are made through `/api/create`, as a
user would: `derive` for a different template, `create_vision` for a model with a projector.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from ollamapy.llm import CompletionRequest
from tests.fakes import MODEL, Script, ScriptedServer, serve_scripted
from tests.ggufs import write_tiny_gguf


@dataclass
class Server:
    scripted: ScriptedServer
    tmp_path: Path

    @property
    def url(self) -> str:
        return self.scripted.url

    @property
    def script(self) -> Script:
        return self.scripted.script

    def sent(self) -> CompletionRequest:
        """The one completion request the runner got."""
        assert len(self.script.requests) == 1, self.script.requests
        return self.script.requests[0]

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key="ollama", max_retries=0)

    def derive(self, name: str, modelfile_extra: str) -> None:
        """Create `name` from the scripted model, with more Modelfile commands."""
        self._create({"model": name, "modelfile": f"FROM {MODEL}\n{modelfile_extra}"})

    def create_vision(self, name: str, template: str) -> None:
        """Create `name` from a model file and a projector (so it accepts images)."""
        files = {
            "model.gguf": self._upload(write_tiny_gguf(self.tmp_path / "vision.gguf")),
            "mmproj.gguf": self._upload(
                write_tiny_gguf(self.tmp_path / "mmproj.gguf", arch="clip")
            ),
        }
        self._create({"model": name, "files": files, "template": template})

    def _upload(self, path: Path) -> str:
        data = path.read_bytes()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        response = httpx.post(f"{self.url}/api/blobs/{digest}", content=data, timeout=30)
        assert response.status_code in (200, 201), response.text
        return digest

    def _create(self, body: dict[str, object]) -> None:
        response = httpx.post(f"{self.url}/api/create", json={**body, "stream": False}, timeout=60)
        assert response.status_code == 200, response.text


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    for scripted in serve_scripted(tmp_path, Script()):
        yield Server(scripted, tmp_path)
