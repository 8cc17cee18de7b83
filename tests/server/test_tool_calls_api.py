"""`/api/chat` and `/v1/chat/completions` with tools, through a server whose runner is canned.

The fake runner replays fixed chunks, so these tests check the wiring (template tag, parser,
events, non-streaming collection, the OpenAI translation) without a model.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import ollama
import openai
import pytest

from ollamapy.config import Config, parse_host
from ollamapy.runner.protocol import (
    CompletionChunk,
    CompletionDone,
    CompletionRequest,
    TokenizeResponse,
)
from ollamapy.scheduler import ModelLoad, Scheduler
from tests.ggufs import write_tiny_gguf
from tests.scheduler.live import LiveApp, create_model, serve_app
from tests.server.conftest import free_port

MODEL = "toolbox:latest"
TEMPLATE = (
    'TEMPLATE """{{- if .Tools }}<|im_start|>system\n'
    "{{ range .Tools }}{{ json . }}\n{{ end }}<|im_end|>\n{{ end }}"
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n"
    "{{ if .Content }}{{ .Content }}{{- else if .ToolCalls }}<tool_call>\n"
    '{{ range .ToolCalls }}{"name": "{{ .Function.Name }}", '
    '"arguments": {{ json .Function.Arguments }}}\n'
    '{{ end }}</tool_call>{{ end }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"""\n'
)
CHUNKS = [
    "<tool",
    '_call>\n{"name": "get_',
    'weather", "arguments": {"city": ',
    '"Toronto"}}\n</tool_call>',
]
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
ASK: Any = [{"role": "user", "content": "Weather in Toronto?"}]


class CannedRunner:
    """Replays `chunks` for every completion; tokenizes by characters."""

    def __init__(self, chunks: Sequence[str]) -> None:
        self.chunks = list(chunks)
        self.alive = True

    async def tokenize(self, text: str) -> list[int]:
        return [ord(c) for c in text]

    async def tokenize_prompt(self, text: str) -> TokenizeResponse:
        return TokenizeResponse([ord(c) for c in text])

    async def detokenize(self, tokens: Sequence[int]) -> str:
        return "".join(chr(t) for t in tokens)

    async def completion(
        self, request: CompletionRequest
    ) -> AsyncIterator[CompletionChunk | CompletionDone]:
        for chunk in self.chunks:
            yield CompletionChunk(chunk)
        yield CompletionDone("stop", 5, 1000, len(self.chunks), 2000)

    async def close(self) -> None:
        self.alive = False


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    runner = CannedRunner(CHUNKS)

    async def factory(load: ModelLoad) -> CannedRunner:
        return runner

    config = Config(
        host=parse_host(f"127.0.0.1:{free_port()}"), models_dir=tmp_path_factory.mktemp("m")
    )
    scheduler = Scheduler(factory, default_keep_alive=300)
    gguf: Path = write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")
    for app in serve_app(config, scheduler):
        create_model(app.url, MODEL, gguf, TEMPLATE)
        yield app


def test_native_streaming_chat_returns_tool_calls(live: LiveApp) -> None:
    parts = list(
        ollama.Client(host=live.url).chat(MODEL, messages=ASK, tools=[WEATHER_TOOL], stream=True)
    )
    calls = [call for part in parts for call in part.message.tool_calls or ()]
    assert [(c.function.name, dict(c.function.arguments)) for c in calls] == [
        ("get_weather", {"city": "Toronto"})
    ]
    assert "".join(part.message.content or "" for part in parts) == ""
    assert parts[-1].done and parts[-1].done_reason == "stop"


def test_native_chat_returns_tool_calls(live: LiveApp) -> None:
    response = ollama.Client(host=live.url).chat(MODEL, messages=ASK, tools=[WEATHER_TOOL])
    assert response.message.content == ""
    assert response.done_reason == "stop"
    (call,) = response.message.tool_calls or ()
    assert call.function.name == "get_weather"
    assert dict(call.function.arguments) == {"city": "Toronto"}


def test_without_tools_the_text_is_plain_content(live: LiveApp) -> None:
    response = ollama.Client(host=live.url).chat(MODEL, messages=ASK)
    assert response.message.content == "".join(CHUNKS)
    assert not response.message.tool_calls


def test_raw_wire_carries_index_and_id(live: LiveApp) -> None:
    import httpx

    body = {"model": MODEL, "messages": ASK, "tools": [WEATHER_TOOL], "stream": False}
    message = httpx.post(f"{live.url}/api/chat", json=body, timeout=60).json()["message"]
    (call,) = message["tool_calls"]
    assert call["function"] == {
        "index": 0,
        "name": "get_weather",
        "arguments": {"city": "Toronto"},
    }
    assert call["id"].startswith("call_") and len(call["id"]) == len("call_") + 8


def test_openai_chat_completion_returns_tool_calls(live: LiveApp) -> None:
    client = openai.OpenAI(base_url=f"{live.url}/v1", api_key="ollama")
    completion = client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=[WEATHER_TOOL],
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None and len(choice.message.tool_calls) == 1
    call: Any = choice.message.tool_calls[0]
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert call.function.arguments == '{"city":"Toronto"}'


def test_openai_streaming_returns_tool_calls(live: LiveApp) -> None:
    client = openai.OpenAI(base_url=f"{live.url}/v1", api_key="ollama")
    stream = client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=[WEATHER_TOOL],
        stream=True,
    )
    chunks = list(stream)
    deltas = [call for chunk in chunks for call in chunk.choices[0].delta.tool_calls or ()]
    assert [(d.index, d.function.name) for d in deltas if d.function] == [(0, "get_weather")]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
