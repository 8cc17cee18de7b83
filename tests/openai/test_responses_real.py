"""`/v1/responses` against a real server, the llama.cpp runner and the bundled SmolLM2
(135M), driven by the official `openai` SDK with strict validation (every object and event
checked against the SDK's types; streams also go through its accumulator).

A 135M model does not call tools on its own; `tool_choice` "required" or a named function
makes the grammar force a call whose arguments validate, which is what the tool loop uses.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from scripts.bundle_models import BUNDLED, own_template

from ollamapy.config import Config, parse_host
from tests.conftest import bundled_model_file
from tests.openai.responses_checks import parse_events, strict_client
from tests.server.conftest import LiveServer, free_port, serve

pytestmark = pytest.mark.integration

MODEL = "smollm2:135m"
SMALL = "smollm2-small:135m"
"""The same model with a 256-token context, for truncation."""

WEATHER: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "The current weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "The city"}},
        "required": ["city"],
    },
}
FEW = {"max_output_tokens": 8, "temperature": 0}


def smollm2_modelfile() -> str:
    """The default model's Modelfile, as the bundling script writes it (tools template)."""
    bundled = next(model for model in BUNDLED if model.key == "smollm2")
    body = bundled.modelfile.replace("{chatml-tools}", own_template("chatml-tools"))
    return f"FROM {bundled_model_file('smollm2')}\n{body}"


def start(models: Path) -> Iterator[LiveServer]:
    """A server on a fresh port over `models` (a restart is a second call, same folder)."""
    yield from serve(Config(host=parse_host(f"127.0.0.1:{free_port()}"), models_dir=models))


def create(url: str, name: str, modelfile: str) -> None:
    body = {"model": name, "modelfile": modelfile, "stream": False}
    response = httpx.post(f"{url}/api/create", json=body, timeout=300)
    assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home") / "models"


@pytest.fixture(scope="module")
def server(models: Path) -> Iterator[LiveServer]:
    for live in start(models):
        create(live.url, MODEL, smollm2_modelfile())
        create(live.url, SMALL, f"FROM {MODEL}\nPARAMETER num_ctx 256\n")
        yield live


def client(server: LiveServer) -> openai.OpenAI:
    return strict_client(server.url)


def test_a_response_not_streamed(server: LiveServer) -> None:
    result = client(server).responses.create(model=MODEL, input="Say hello.", **FEW)
    assert result.status in ("completed", "incomplete") and result.output_text
    assert result.usage is not None and 0 < result.usage.output_tokens <= 8


def test_a_streamed_response_parses_event_by_event(server: LiveServer) -> None:
    body = {"model": MODEL, "input": "Say hello.", "stream": True, **FEW}
    response = httpx.post(f"{server.url}/v1/responses", json=body, timeout=300)
    assert response.status_code == 200
    raw = [
        json.loads(line.removeprefix("data: "))
        for line in response.text.splitlines()
        if line.startswith("data: ")
    ]
    events = parse_events(raw)
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    final = events[-1]
    assert final.type in ("response.completed", "response.incomplete")
    assert text and final.response.output_text == text
    with client(server).responses.stream(model=MODEL, input="Say hello.", **FEW) as stream:
        ends = [e.type for e in stream if e.type.startswith("response.") and "complete" in e.type]
    assert ends in (["response.completed"], ["response.incomplete"])


def test_a_forced_call_then_its_output_in_a_second_turn(server: LiveServer) -> None:
    sdk = client(server)
    asked = sdk.responses.create(
        model=MODEL,
        input="What is the weather in Paris?",
        tools=[WEATHER],
        tool_choice={"type": "function", "name": "get_weather"},
        parallel_tool_calls=False,
        temperature=0,
        max_output_tokens=60,
    )
    (call,) = [item for item in asked.output if item.type == "function_call"]
    assert call.name == "get_weather"
    assert isinstance(json.loads(call.arguments)["city"], str)
    answered = sdk.responses.create(
        model=MODEL,
        previous_response_id=asked.id,
        tools=[WEATHER],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "18C, sunny"}],
        **FEW,
    )
    assert answered.previous_response_id == asked.id and answered.output_text
    # the second turn's prompt held the first: far more input than the new item alone
    assert answered.usage is not None and asked.usage is not None
    assert answered.usage.input_tokens > asked.usage.input_tokens


def test_get_and_delete(server: LiveServer) -> None:
    sdk = client(server)
    created = sdk.responses.create(model=MODEL, input="Say hello.", **FEW)
    assert sdk.responses.retrieve(created.id).output_text == created.output_text
    sdk.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(created.id)


LONG = " ".join(f"Item {n} is a {'red' if n % 2 else 'blue'} box." for n in range(120))


def test_input_past_the_context_is_a_400_unless_truncation_is_auto(server: LiveServer) -> None:
    sdk = client(server)
    turns: Any = [
        {"role": "user", "content": LONG},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "Say hello."},
    ]
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.responses.create(model=SMALL, input=turns, **FEW)
    assert caught.value.code == "context_length_exceeded"
    assert "truncation" in caught.value.message
    result = sdk.responses.create(model=SMALL, input=turns, truncation="auto", **FEW)
    assert result.status in ("completed", "incomplete")
    assert result.usage is not None and result.usage.input_tokens < 256  # the long turn went


def test_previous_response_id_across_a_restart(tmp_path: Path) -> None:
    models = tmp_path / "models"
    for first in start(models):
        create(first.url, MODEL, smollm2_modelfile())
        earlier = strict_client(first.url).responses.create(
            model=MODEL, input="My name is Ada.", **FEW
        )
    for second in start(models):
        sdk = strict_client(second.url)
        assert sdk.responses.retrieve(earlier.id).output_text == earlier.output_text
        later = sdk.responses.create(
            model=MODEL, input="What is my name?", previous_response_id=earlier.id, **FEW
        )
        assert later.previous_response_id == earlier.id
        assert later.usage is not None and earlier.usage is not None
        assert later.usage.input_tokens > earlier.usage.input_tokens  # the first turn is in it
    assert (tmp_path / "responses" / "responses.sqlite3").is_file()
