"""The native completion routes through the real app, with a scripted runner.

These pin the one request path: what reaches the runner (the final prompt, and its tokens
only when they had to be counted), and what the client gets (Ollama's NDJSON objects, typed
events encoded once at the edge), without a llama.cpp process.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes import (
    MODEL,
    TOOLS_TEMPLATE,
    Script,
    ScriptedServer,
    serve_scripted,
    word_tokens,
)

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
def server(tmp_path: Path, script: Script) -> Iterator[ScriptedServer]:
    yield from serve_scripted(tmp_path, script)


def post(server: ScriptedServer, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json={"model": MODEL, **body}, timeout=30)


def lines(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines() if line]


def conversation(turns: int, words: int = 5) -> list[dict[str, str]]:
    """A system message, then `turns` user/assistant messages of `words` words each."""
    messages = [{"role": "system", "content": "You are terse."}]
    for n in range(turns):
        role = "user" if n % 2 == 0 else "assistant"
        messages.append({"role": role, "content": " ".join([f"m{n}"] * words)})
    if messages[-1]["role"] != "user":
        messages.append({"role": "user", "content": "last question"})
    return messages


# ----------------------------------------------------------------------------- generate


def test_generate_streams_each_piece_then_the_stats(server: ScriptedServer) -> None:
    got = lines(post(server, "/api/generate", {"prompt": "Say hi"}))
    assert [line["response"] for line in got] == ["Hello", " there", ""]
    assert [line["done"] for line in got] == [False, False, True]
    final = got[-1]
    assert list(final)[:6] == ["model", "created_at", "response", "done", "done_reason", "context"]
    sent = server.script.requests[0]
    assert sent.prompt == "<|im_start|>user\nSay hi<|im_end|>\n<|im_start|>assistant\n"
    prompt_tokens = word_tokens(sent.prompt)
    assert final["prompt_eval_count"] == len(prompt_tokens)
    assert final["context"] == [*prompt_tokens, 5, 6]
    assert final["eval_count"] == 2 and final["done_reason"] == "stop"
    assert final["total_duration"] >= final["load_duration"] >= 0


def test_generate_not_streamed_is_one_object(server: ScriptedServer) -> None:
    response = post(server, "/api/generate", {"prompt": "Say hi", "stream": False})
    body = response.json()
    assert body["response"] == "Hello there" and body["done"] is True
    assert server.script.requests[0].stream is False


def test_raw_generate_sends_the_prompt_verbatim_without_context(server: ScriptedServer) -> None:
    body = post(server, "/api/generate", {"prompt": "<s>raw", "raw": True, "stream": False})
    assert server.script.requests[0].prompt == "<s>raw"
    assert "context" not in body.json()


def test_empty_prompt_loads_and_keep_alive_zero_unloads(server: ScriptedServer) -> None:
    loaded = post(server, "/api/generate", {})
    assert loaded.json()["done_reason"] == "load"
    assert [m["name"] for m in httpx.get(f"{server.url}/api/ps").json()["models"]] == [MODEL]
    unloaded = post(server, "/api/generate", {"keep_alive": 0})
    assert unloaded.json()["done_reason"] == "unload"
    assert httpx.get(f"{server.url}/api/ps").json()["models"] == []
    assert server.script.requests == []


# ----------------------------------------------------------------------------- chat


def test_chat_streams_messages_then_the_stats(server: ScriptedServer) -> None:
    messages = [{"role": "user", "content": "Hi"}]
    got = lines(post(server, "/api/chat", {"messages": messages}))
    assert [line["message"] for line in got] == [
        {"role": "assistant", "content": "Hello"},
        {"role": "assistant", "content": " there"},
        {"role": "assistant", "content": ""},
    ]
    assert got[-1]["done"] is True and "context" not in got[-1]


def test_chat_not_streamed_joins_the_answer(server: ScriptedServer) -> None:
    messages = [{"role": "user", "content": "Hi"}]
    body = post(server, "/api/chat", {"messages": messages, "stream": False}).json()
    assert body["message"] == {"role": "assistant", "content": "Hello there"}
    assert body["done_reason"] == "stop"


def test_a_conversation_that_fits_goes_to_the_runner_untokenized(server: ScriptedServer) -> None:
    """Its byte length alone proves that it fits: the server counts no tokens, renders
    once, and the runner tokenizes the text (once)."""
    messages = conversation(300)
    options = {"num_ctx": 100_000}
    post(server, "/api/chat", {"messages": messages, "options": options, "stream": False})
    sent = server.script.requests[0]
    assert server.script.tokenized == []
    assert sent.tokens is None
    assert all(m["content"] in sent.prompt for m in messages)


def test_a_conversation_that_does_not_fit_drops_the_oldest_turns(server: ScriptedServer) -> None:
    """Ollama's rule (system messages and the newest message always kept, then as many of
    the newest turns as fit), found with a few token counts rather than one per message;
    the runner gets the counted tokens and does not tokenize again."""
    messages = conversation(300)
    num_ctx = 400
    body = {"messages": messages, "options": {"num_ctx": num_ctx}, "stream": False}
    final = post(server, "/api/chat", body).json()
    sent = server.script.requests[0]
    assert sent.tokens is not None and list(sent.tokens) == word_tokens(sent.prompt)
    assert len(sent.tokens) <= num_ctx
    kept = [m for m in messages if m["content"] in sent.prompt]
    assert kept[0] == messages[0] and kept[-1] == messages[-1]
    first_kept = messages.index(kept[1])
    assert kept[1:] == messages[first_kept:]
    one_more = [messages[0], *messages[first_kept - 1 :]]
    assert len(word_tokens(_chatml(one_more))) > num_ctx
    assert len(server.script.tokenized) <= math.ceil(math.log2(len(messages))) + 1
    assert final["prompt_eval_count"] == len(sent.tokens)


def _chatml(messages: list[dict[str, str]]) -> str:
    turns = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return turns + "<|im_start|>assistant\n"


def test_debug_render_only_never_touches_a_runner(server: ScriptedServer) -> None:
    messages = conversation(4)
    body = post(server, "/api/chat", {"messages": messages, "_debug_render_only": True}).json()
    assert body["debug_info"]["rendered_template"] == _chatml(messages)
    assert server.script.started == 0


# ----------------------------------------------------------------------------- tools


@pytest.fixture
def tools_server(tmp_path: Path, script: Script) -> Iterator[ScriptedServer]:
    yield from serve_scripted(tmp_path, script, TOOLS_TEMPLATE)


def test_tool_calls_are_parsed_out_of_the_stream(tools_server: ScriptedServer) -> None:
    tools_server.script.chunks = [
        "Checking. <tool",
        '_call>{"name": "get_weather", ',
        '"arguments": {"city": "Paris"}}</tool_call>',
    ]
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    got = lines(post(tools_server, "/api/chat", {"messages": messages, "tools": [WEATHER]}))
    calls = [call for line in got for call in line["message"].get("tool_calls", [])]
    assert len(calls) == 1
    assert calls[0]["id"].startswith("call_") and len(calls[0]["id"]) == 13
    assert calls[0]["function"] == {
        "index": 0,
        "name": "get_weather",
        "arguments": {"city": "Paris"},
    }
    content = "".join(line["message"]["content"] for line in got)
    assert content == "Checking. "
    assert "<tools>" in tools_server.script.requests[0].prompt


def test_tools_on_a_template_without_tools_is_ollamas_400(server: ScriptedServer) -> None:
    messages = [{"role": "user", "content": "Hi"}]
    response = post(server, "/api/chat", {"messages": messages, "tools": [WEATHER]})
    assert response.status_code == 400
    assert response.json() == {
        "error": f"registry.ollama.ai/library/{MODEL} does not support tools"
    }
    assert server.script.started == 0
