"""Logprobs through a real server, the real runner and the bundled SmolLM2: the same values
on /api/generate streamed and not, on /v1/completions, and on /api/chat and
/v1/chat/completions (one greedy answer; the values are the model's raw log-softmax, so
only the chosen tokens, the same under greedy sampling, could make them differ)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import bundled_model_file
from tests.server.conftest import SMOLLM2_MODELFILE, LiveServer, serve_with_model

pytestmark = pytest.mark.integration

MODEL = "smollm2:135m"
PROMPT = "Name three colors."
OPTIONS = {"temperature": 0, "num_predict": 12}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    modelfile = f"FROM {bundled_model_file('smollm2')}\n{SMOLLM2_MODELFILE}"
    yield from serve_with_model(tmp_path_factory, MODEL, modelfile)


def post(server: LiveServer, path: str, body: dict[str, Any]) -> httpx.Response:
    response = httpx.post(f"{server.url}{path}", json={"model": MODEL, **body}, timeout=300)
    assert response.status_code == 200, response.text
    return response


def streamed(response: httpx.Response) -> list[dict[str, Any]]:
    objects = [json.loads(line) for line in response.text.splitlines() if line]
    return [entry for obj in objects for entry in obj.get("logprobs", [])]


def test_generate_streamed_unstreamed_and_openai_agree(server: LiveServer) -> None:
    body = {"prompt": PROMPT, "options": OPTIONS, "logprobs": True, "top_logprobs": 3}
    whole = post(server, "/api/generate", {**body, "stream": False}).json()
    pieces = streamed(post(server, "/api/generate", body))
    openai = post(
        server,
        "/v1/completions",
        {"prompt": PROMPT, "temperature": 0, "max_tokens": 12, "logprobs": 3},
    ).json()
    entries = whole["logprobs"]
    # one entry per token sent (a token a stop string swallowed has none)
    assert 0 < len(entries) <= whole["eval_count"]
    assert pieces == entries
    assert openai["choices"][0]["logprobs"]["content"] == entries
    assert openai["choices"][0]["logprobs"]["token_logprobs"] == [e["logprob"] for e in entries]
    assert "".join(e["token"] for e in entries) == whole["response"]
    for entry in entries:
        assert entry["logprob"] == entry["top_logprobs"][0]["logprob"]


def test_chat_and_openai_chat_agree(server: LiveServer) -> None:
    messages = [{"role": "user", "content": PROMPT}]
    native = post(
        server,
        "/api/chat",
        {"messages": messages, "options": OPTIONS, "logprobs": True, "stream": False},
    ).json()
    openai = post(
        server,
        "/v1/chat/completions",
        {"messages": messages, "temperature": 0, "max_tokens": 12, "logprobs": True},
    ).json()
    content = openai["choices"][0]["logprobs"]["content"]
    assert [(e["token"], e["logprob"]) for e in content] == [
        (e["token"], e["logprob"]) for e in native["logprobs"]
    ]
    assert content and "".join(e["token"] for e in content) == native["message"]["content"]
