"""`tool_choice` and `parallel_tool_calls` on `/api/chat` and `/v1/chat/completions`, through
the real app with a scripted runner: what reaches the runner (the prompt, the call grammar)
and what the client gets (calls, or Ollama's/OpenAI's 400s before any runner is touched)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from ollamapy.llm import ToolCallGrammar
from tests.fakes import (
    MODEL,
    TOOLS_TEMPLATE,
    WEATHER,
    Script,
    ScriptedServer,
    serve_scripted,
)

TIME: dict[str, Any] = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
}
TOOLS: Any = [WEATHER, TIME]
ASK: Any = [{"role": "user", "content": "Weather in Toronto?"}]
TORONTO = '{"name":"get_weather","arguments":{"city":"Toronto"}}'
PARIS = '{"name":"get_weather","arguments":{"city":"Paris"}}'


@pytest.fixture
def script() -> Script:
    return Script(chunks=["<tool_call>", TORONTO, PARIS, "</tool_call>"])


@pytest.fixture
def server(tmp_path: Path, script: Script) -> Iterator[ScriptedServer]:
    yield from serve_scripted(tmp_path, script, TOOLS_TEMPLATE)


def chat(server: ScriptedServer, **fields: Any) -> httpx.Response:
    body = {"model": MODEL, "messages": ASK, "tools": TOOLS, "stream": False} | fields
    return httpx.post(f"{server.url}/api/chat", json=body, timeout=30)


def sent_grammar(script: Script) -> ToolCallGrammar | None:
    (request,) = script.requests
    return request.tool_grammar


def call_names(schema: dict[str, Any]) -> list[str]:
    calls = schema.get("anyOf", [schema])
    return [call["properties"]["name"]["const"] for call in calls]


def test_auto_sends_no_grammar_and_parses_every_call(server: ScriptedServer) -> None:
    message = chat(server, tool_choice="auto").json()["message"]
    assert [c["function"]["arguments"]["city"] for c in message["tool_calls"]] == [
        "Toronto",
        "Paris",
    ]
    assert sent_grammar(server.script) is None


def test_required_sends_the_templates_call_grammar(server: ScriptedServer) -> None:
    assert chat(server, tool_choice="required").status_code == 200
    grammar = sent_grammar(server.script)
    assert grammar is not None
    assert (grammar.prefix, grammar.separator, grammar.suffix) == (
        "<tool_call>",
        "",
        "</tool_call>",
    )
    assert call_names(grammar.schema) == ["get_weather", "get_time"]
    assert (
        grammar.schema["anyOf"][0]["properties"]["arguments"] == WEATHER["function"]["parameters"]
    )
    assert (grammar.max_calls, grammar.order) == (0, ("name", "arguments"))


def test_a_named_function_and_no_parallel_calls(server: ScriptedServer) -> None:
    choice = {"type": "function", "function": {"name": "get_weather"}}
    message = chat(server, tool_choice=choice, parallel_tool_calls=False).json()["message"]
    (call,) = message["tool_calls"]
    assert call["function"]["arguments"] == {"city": "Toronto"}
    grammar = sent_grammar(server.script)
    assert grammar is not None
    assert (call_names(grammar.schema), grammar.max_calls) == (["get_weather"], 1)


def test_parallel_tool_calls_false_keeps_one_call_without_a_grammar(server: ScriptedServer) -> None:
    message = chat(server, parallel_tool_calls=False).json()["message"]
    assert len(message["tool_calls"]) == 1
    assert sent_grammar(server.script) is None


def test_none_hides_the_tools_and_parses_nothing(server: ScriptedServer) -> None:
    message = chat(server, tool_choice="none").json()["message"]
    assert message["content"] == f"<tool_call>{TORONTO}{PARIS}</tool_call>"
    assert "tool_calls" not in message
    (request,) = server.script.requests
    assert "<tools>" not in request.prompt and request.tool_grammar is None
    rendered = chat(server, _debug_render_only=True).json()["debug_info"]["rendered_template"]
    assert "<tools>" in rendered


def test_streamed_required_calls_carry_ids_and_indices(server: ScriptedServer) -> None:
    response = chat(server, tool_choice="required", stream=True)
    parts = [json.loads(line) for line in response.text.splitlines()]
    calls = [c for part in parts for c in part["message"].get("tool_calls", [])]
    assert [c["function"]["index"] for c in calls] == [0, 1]
    assert all(c["id"].startswith("call_") for c in calls)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"tool_choice": "always"}, "invalid tool_choice"),
        ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "'nope'"),
        ({"tool_choice": "required", "tools": None}, "needs at least one tool"),
        ({"tool_choice": "required", "format": "json"}, "format cannot be combined"),
        ({"tool_choice": 3}, "tool_choice"),
        ({"parallel_tool_calls": "no"}, "parallel_tool_calls"),
        (
            {
                "tool_choice": "required",
                "tools": [
                    {
                        "type": "function",
                        "function": {
                            "name": "f",
                            "parameters": {"properties": {"a": {"$ref": "#/$defs/A"}}},
                        },
                    }
                ],
            },
            "\\$ref",
        ),
    ],
)
def test_bad_choices_are_ollama_400s_before_any_runner(
    server: ScriptedServer, fields: dict[str, Any], message: str
) -> None:
    response = chat(server, **fields)
    assert response.status_code == 400
    assert list(response.json()) == ["error"]
    assert server.script.started == 0
    assert re.search(message, response.json()["error"])


def test_openai_sdk_tool_choice_reaches_the_runner(server: ScriptedServer) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="ollama")
    completion = client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        parallel_tool_calls=False,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls: Any = choice.message.tool_calls
    (call,) = calls
    assert call.function.arguments == '{"city":"Toronto"}'
    grammar = sent_grammar(server.script)
    assert grammar is not None and call_names(grammar.schema) == ["get_weather"]


def test_openai_sdk_bad_tool_choice_is_an_openai_400(server: ScriptedServer) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="ollama", max_retries=0)
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(
            model=MODEL,
            messages=ASK,
            tools=TOOLS,
            tool_choice={"type": "function", "function": {"name": "launch"}},
        )
    assert "launch" in str(raised.value)
    assert server.script.started == 0
