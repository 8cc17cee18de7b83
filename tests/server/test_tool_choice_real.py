"""`tool_choice` through a real server, the llama.cpp runner and the bundled SmolLM2 (135M).

The model is created exactly as `scripts/bundle_models.py create` creates the default model
(its tools-capable chatml template), so these tests also cover that template end to end.
A 135M model does not call tools on its own; with `tool_choice` "required" or a named
function, the grammar makes every answer a call whose arguments validate.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import jsonschema  # type: ignore[import-untyped]
import openai
import pytest
from scripts.bundle_models import BUNDLED, own_template

from tests.conftest import bundled_model_file
from tests.server.conftest import LiveServer, serve_with_model

pytestmark = pytest.mark.integration

MODEL = "smollm2:135m"
SEEDS = 4
"""Seeds per test run, `PARALLEL` at a time; `scripts/tool_choice_seeds.py` runs 100."""
PARALLEL = 4

WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
        },
    },
}
ADD: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two integers",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    },
}
TOOLS: Any = [WEATHER, ADD]
SCHEMAS = {tool["function"]["name"]: tool["function"]["parameters"] for tool in TOOLS}
ASK: Any = [{"role": "user", "content": "What is the weather like in Paris today?"}]


def smollm2_modelfile() -> str:
    """The default model's Modelfile body, as the bundling script writes it."""
    bundled = next(model for model in BUNDLED if model.key == "smollm2")
    return bundled.modelfile.replace("{chatml-tools}", own_template("chatml-tools"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    modelfile = f"FROM {bundled_model_file('smollm2')}\n{smollm2_modelfile()}"
    yield from serve_with_model(tmp_path_factory, MODEL, modelfile, num_parallel=PARALLEL)


def chat(server: LiveServer, **fields: Any) -> dict[str, Any]:
    body = {"model": MODEL, "messages": ASK, "tools": TOOLS, "stream": False} | fields
    response = httpx.post(f"{server.url}/api/chat", json=body, timeout=600)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def options(seed: int) -> dict[str, Any]:
    return {"seed": seed, "temperature": 0.8, "num_predict": 96}


def test_show_lists_the_tools_capability(server: LiveServer) -> None:
    shown = httpx.post(f"{server.url}/api/show", json={"model": MODEL}, timeout=30).json()
    assert "tools" in shown["capabilities"]


def test_required_answers_with_calls_whose_arguments_validate(server: LiveServer) -> None:
    def answer(seed: int) -> dict[str, Any]:
        message: dict[str, Any] = chat(server, tool_choice="required", options=options(seed))[
            "message"
        ]
        return message

    with ThreadPoolExecutor(PARALLEL) as pool:  # the runner batches them: one decode per step
        messages = list(pool.map(answer, range(SEEDS)))
    for seed, message in enumerate(messages):
        assert message["tool_calls"], f"seed {seed}: {message}"
        for call in message["tool_calls"]:
            function = call["function"]
            jsonschema.validate(function["arguments"], SCHEMAS[function["name"]])


def test_a_named_function_is_the_one_called(server: LiveServer) -> None:
    choice = {"type": "function", "function": {"name": "add"}}
    for seed in range(2):
        result = chat(server, tool_choice=choice, parallel_tool_calls=False, options=options(seed))
        (call,) = result["message"]["tool_calls"]
        assert call["function"]["name"] == "add"
        jsonschema.validate(call["function"]["arguments"], SCHEMAS["add"])


def test_none_hides_the_tools_from_the_prompt(server: LiveServer) -> None:
    body = {"tool_choice": "none", "_debug_render_only": True}
    hidden = chat(server, **body)["debug_info"]["rendered_template"]
    shown = chat(server, _debug_render_only=True)["debug_info"]["rendered_template"]
    assert "<tools>" in shown and "<tools>" not in hidden


def test_openai_sdk_with_a_forced_function(server: LiveServer) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="ollama")
    completion = client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        seed=3,
        max_tokens=96,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls: Any = choice.message.tool_calls
    (call,) = calls
    assert call.type == "function" and call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), SCHEMAS["get_weather"])


def test_openai_sdk_streams_a_required_call(server: LiveServer) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="ollama")
    stream = client.chat.completions.create(
        model=MODEL, messages=ASK, tools=TOOLS, tool_choice="required", seed=5, stream=True
    )
    chunks = list(stream)
    deltas = [d for chunk in chunks for d in chunk.choices[0].delta.tool_calls or ()]
    assert deltas and all(d.function is not None for d in deltas)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    for delta in deltas:
        assert delta.function is not None and delta.function.name in SCHEMAS
        jsonschema.validate(
            json.loads(delta.function.arguments or ""), SCHEMAS[delta.function.name]
        )
