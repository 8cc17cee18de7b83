"""`/v1/messages` through the official `anthropic` SDK against a real server running the
bundled SmolLM2 (135M) on llama.cpp, created as `scripts/bundle_models.py` creates the
default model (its tools-capable ChatML template).

A 135M model answers poorly but really: these check shapes, counts and the machinery
(grammar-forced tool calls, stop strings, the prefix cache, count_tokens), not wisdom.
Thinking needs a thinking model, which is not bundled: `test_routes.py` covers thinking
blocks with the scripted runner.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import jsonschema  # type: ignore[import-untyped]
import pytest

from tests.conftest import bundled_model_file
from tests.server.conftest import LiveServer, serve_with_model
from tests.server.test_tool_choice_real import smollm2_modelfile

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]
"""Grammar-forced calls on a loaded 2-core machine took up to 500 s in one test."""

MODEL = "smollm2:135m"
GREEDY: Any = {"temperature": 0.0}
"""Sampling fields travel as extra_body (this SDK's `create` no longer declares them)."""
SYSTEM = "You are a helpful assistant who answers in one short sentence."
WEATHER: Any = {
    "name": "get_weather",
    "description": "The current weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "The city"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city", "unit"],
    },
}
ADD: Any = {
    "name": "add",
    "description": "Add two integers",
    "input_schema": {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
    },
}
TOOLS: Any = [WEATHER, ADD]
SCHEMAS = {tool["name"]: tool["input_schema"] for tool in TOOLS}
ASK: Any = [{"role": "user", "content": "What is the weather like in Paris today?"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    modelfile = f"FROM {bundled_model_file('smollm2')}\n{smollm2_modelfile()}"
    yield from serve_with_model(tmp_path_factory, MODEL, modelfile)


def client(server: LiveServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key="ollama", max_retries=0)


def unload(server: LiveServer) -> None:
    """Stop the model, so the next request is evaluated cold (an empty KV cache)."""
    response = httpx.post(
        f"{server.url}/api/chat", json={"model": MODEL, "keep_alive": 0}, timeout=60
    )
    assert response.status_code == 200, response.text


def test_a_message(server: LiveServer) -> None:
    message = client(server).messages.create(
        model=MODEL, max_tokens=8, system=SYSTEM, messages=ASK, extra_body=GREEDY
    )
    assert message.role == "assistant" and message.model == MODEL
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text.strip()  # type: ignore[union-attr]
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.usage.output_tokens > 0 and message.usage.input_tokens > 0


def test_streaming_gives_the_same_answer(server: LiveServer) -> None:
    whole = client(server).messages.create(
        model=MODEL, max_tokens=8, messages=ASK, extra_body=GREEDY
    )
    with client(server).messages.stream(
        model=MODEL, max_tokens=8, messages=ASK, extra_body=GREEDY
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == whole.content[0].text  # type: ignore[union-attr]
    assert final.content[0].text == text  # type: ignore[union-attr]
    assert final.stop_reason == whole.stop_reason
    assert final.usage.output_tokens == whole.usage.output_tokens
    full = final.usage.input_tokens + (final.usage.cache_read_input_tokens or 0)
    assert full == whole.usage.input_tokens + (whole.usage.cache_read_input_tokens or 0)


def test_a_stop_sequence_is_named(server: LiveServer) -> None:
    ask: Any = [{"role": "user", "content": "Count from 1 to 10, separated by commas."}]
    whole = client(server).messages.create(
        model=MODEL, max_tokens=16, messages=ask, extra_body=GREEDY
    )
    text = whole.content[0].text  # type: ignore[union-attr]
    stop = text[3:5]
    assert len(stop) == 2, text
    stopped = client(server).messages.create(
        model=MODEL, max_tokens=16, messages=ask, stop_sequences=[stop, "never"], extra_body=GREEDY
    )
    assert (stopped.stop_reason, stopped.stop_sequence) == ("stop_sequence", stop)
    assert stopped.content[0].text == text[: text.index(stop)]  # type: ignore[union-attr]


def test_max_tokens_is_the_stop_reason_when_it_runs_out(server: LiveServer) -> None:
    message = client(server).messages.create(model=MODEL, max_tokens=2, messages=ASK)
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 2


@pytest.mark.parametrize(
    "choice",
    [{"type": "tool", "name": "add"}, {"type": "any"}],
    ids=["tool", "any"],
)
def test_a_forced_tool_choice_is_a_valid_tool_use(server: LiveServer, choice: Any) -> None:
    message = client(server).messages.create(
        model=MODEL,
        max_tokens=48,
        messages=ASK,
        tools=TOOLS,
        tool_choice={**choice, "disable_parallel_tool_use": True},
        extra_body={"temperature": 0.8},
    )
    assert message.stop_reason == "tool_use"
    uses: Any = [block for block in message.content if block.type == "tool_use"]
    assert len(uses) == 1
    if choice["type"] == "tool":
        assert uses[0].name == "add"
    jsonschema.validate(uses[0].input, SCHEMAS[uses[0].name])


def test_a_multi_turn_tool_loop(server: LiveServer) -> None:
    """Call (forced), answer the call with a tool_result, and get a text answer back; the
    assistant turn goes back exactly as the SDK returned it."""
    messages: Any = list(ASK)
    first = client(server).messages.create(
        model=MODEL,
        max_tokens=48,
        messages=messages,
        tools=TOOLS,
        tool_choice={"type": "tool", "name": "get_weather"},
    )
    (use,) = [block for block in first.content if block.type == "tool_use"]
    messages.append({"role": "assistant", "content": first.content})
    result = {"type": "tool_result", "tool_use_id": use.id, "content": "Sunny, 24 degrees"}
    messages.append({"role": "user", "content": [result]})
    with client(server).messages.stream(
        model=MODEL,
        max_tokens=8,
        messages=messages,
        tools=TOOLS,
        tool_choice={"type": "none"},
        extra_body=GREEDY,
    ) as stream:
        second = stream.get_final_message()
    assert [block.type for block in second.content] == ["text"]
    assert second.stop_reason in ("end_turn", "max_tokens")


def test_count_tokens_equals_the_cold_prompt_eval_count(server: LiveServer) -> None:
    request: Any = {"model": MODEL, "system": SYSTEM, "messages": ASK, "tools": TOOLS}
    unload(server)
    counted = client(server).messages.count_tokens(**request)
    unload(server)
    response = httpx.post(
        f"{server.url}/api/chat",
        json={
            "model": MODEL,
            "messages": [{"role": "system", "content": SYSTEM}, *ASK],
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": t["name"],
                        "parameters": t["input_schema"],
                        "description": t["description"],
                    },
                }
                for t in TOOLS
            ],
            "stream": False,
            "options": {"num_predict": 1},
        },
        timeout=120,
    )
    assert response.status_code == 200, response.text
    native = response.json()["prompt_eval_count"]
    unload(server)
    message = client(server).messages.create(max_tokens=1, **request)
    assert message.usage.cache_read_input_tokens == 0  # cold: nothing came from the cache
    assert counted.input_tokens == message.usage.input_tokens == native > 100


def test_a_repeated_prefix_is_read_from_the_cache(server: LiveServer) -> None:
    long_system = SYSTEM + " " + " ".join(f"Rule {n}: be kind." for n in range(60))
    request: Any = {"model": MODEL, "max_tokens": 4, "system": long_system, "messages": ASK}
    first = client(server).messages.create(**request)
    again: Any = [
        *ASK,
        {"role": "assistant", "content": "Sunny."},
        {"role": "user", "content": "Sure?"},
    ]
    second = client(server).messages.create(**{**request, "messages": again})
    whole = first.usage.input_tokens + (first.usage.cache_read_input_tokens or 0)
    assert (second.usage.cache_read_input_tokens or 0) >= whole - 8  # all but the last turn
    assert second.usage.input_tokens < 30


def test_a_claude_alias_made_with_copy(server: LiveServer) -> None:
    copied = httpx.post(
        f"{server.url}/api/copy",
        json={"source": MODEL, "destination": "claude-3-5-sonnet"},
        timeout=30,
    )
    assert copied.status_code == 200, copied.text
    message = client(server).messages.create(model="claude-3-5-sonnet", max_tokens=8, messages=ASK)
    assert message.model == "claude-3-5-sonnet" and message.content


def test_error_shapes_through_the_sdk(server: LiveServer) -> None:
    with pytest.raises(anthropic.NotFoundError) as missing:
        client(server).messages.create(model="claude-opus-4", max_tokens=8, messages=ASK)
    assert missing.value.status_code == 404
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError, match="image URLs") as bad:
        client(server).messages.create(
            model=MODEL,
            max_tokens=8,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {"type": "url", "url": "https://example.com/a.png"},
                        }
                    ],
                }
            ],
        )
    assert bad.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    relaxed = client(server).messages.create(  # a model that cannot think answers anyway
        model=MODEL, max_tokens=4, messages=ASK, thinking={"type": "enabled", "budget_tokens": 1024}
    )
    assert [block.type for block in relaxed.content] == ["text"]
