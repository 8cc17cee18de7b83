"""Replays of the requests a coding agent sends to `/v1/responses`, written from the OpenAI
API reference in the shape Codex sends them (`tests/testdata/responses/`, written by
`scripts/make_responses_transcripts.py`): long `instructions`, 21 function tools, a custom
(freeform) `apply_patch` with its grammar, the hosted `web_search`, `reasoning` with
`summary`, `include`, `prompt_cache_key`, `store: false`, streaming, earlier turns
replayed as `reasoning`, assistant `message`, `function_call`/`custom_tool_call` and
their output items; and a structured-output request from the guide. Each goes through the
real app with the scripted runner; every response and event must parse with the SDK's own
types (strict validation, and the stream accumulator), and what reached the runner must
hold every tool and item.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import TESTDATA
from tests.fakes import MODEL, Script, ScriptedServer, serve_scripted
from tests.openai.responses_checks import parse_events, parse_response, strict_client
from tests.openai.test_responses_routes import QWEN3, sse_events

REPLAYS = TESTDATA / "responses"
PATCH = "*** Begin Patch\n*** Add File: NOTES.md\n+Fixed leap days.\n*** End Patch\n"
PATCH_CALL = (
    '<tool_call>\n{"name": "apply_patch", "arguments": {"input": '
    + json.dumps(PATCH)
    + "}}\n</tool_call>"
)
SHELL_CALL = (
    '<tool_call>\n{"name": "shell", "arguments": {"command": ["bash", "-lc", "pytest -q"]}}'
    "\n</tool_call>"
)


def transcript(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((REPLAYS / f"{name}.json").read_text())
    return body | {"model": MODEL}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ScriptedServer]:
    yield from serve_scripted(tmp_path, Script(), QWEN3)


def without(body: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != key}


def check_prompt_holds(server: ScriptedServer, body: dict[str, Any]) -> None:
    """Every tool, the instructions and every item's text reached the rendered prompt (a
    call made in the same turn as a text answer joins it, and Qwen 3's template renders a
    turn's text or its calls, not both)."""
    prompt = server.script.requests[-1].prompt
    unspaced = prompt.replace(" ", "")
    assert body["instructions"] in prompt
    for tool in body["tools"]:
        if tool["type"] == "web_search":  # hosted: left out of what the model sees
            assert '"name":"web_search"' not in unspaced
        else:
            assert f'"name":"{tool["name"]}"' in unspaced
    previous: dict[str, Any] = {}
    for item in body["input"]:
        joined_text = previous.get("role") == "assistant"  # Qwen 3 shows text or calls
        previous = item
        if item.get("type") in ("function_call_output", "custom_tool_call_output"):
            output = item["output"]
            text = output if isinstance(output, str) else output[0]["text"]
            assert text in prompt
        elif item.get("type") in ("function_call", "custom_tool_call") and not joined_text:
            assert f'{{"name": "{item["name"]}", "arguments": {{' in prompt


def test_a_first_agent_turn_streams_a_trace_and_a_call(server: ScriptedServer) -> None:
    server.script.chunks = ["<think>\nRun the tests.\n</think>\n\n", SHELL_CALL]
    body = transcript("codex_turn1")
    events = parse_events(
        sse_events(httpx.post(f"{server.url}/v1/responses", json=body, timeout=60))
    )
    final = events[-1]
    assert final.type == "response.completed"
    assert [item.type for item in final.response.output] == ["reasoning", "function_call"]
    assert final.response.store is False
    served = [tool.type for tool in final.response.tools]
    assert served.count("function") == 21 and served.count("custom") == 1  # web_search left out
    check_prompt_holds(server, body)
    # the SDK, given the same request as keyword arguments, streams it too
    sdk_events = list(strict_client(server.url).responses.create(**body))
    assert sdk_events[-1].type == "response.completed"


def test_a_later_turn_replays_reasoning_calls_and_outputs(server: ScriptedServer) -> None:
    server.script.chunks = ["The parser rejects February 29; ", "I will remove that check."]
    body = transcript("codex_turn2")
    with strict_client(server.url).responses.stream(**without(body, "stream")) as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    assert final.output_text == "The parser rejects February 29; I will remove that check."
    check_prompt_holds(server, body)
    prompt = server.script.requests[-1].prompt
    assert prompt.index("I'll run the failing tests first.") < prompt.index("day is out of range")


def test_a_forced_call_turn_not_streamed(server: ScriptedServer) -> None:
    server.script.chunks = [PATCH_CALL]
    body = transcript("codex_turn3_forced")
    raw = httpx.post(f"{server.url}/v1/responses", json=body, timeout=60)
    assert raw.status_code == 200, raw.text
    response = parse_response(raw.json())
    call = response.output[0]
    assert call.type == "custom_tool_call" and call.name == "apply_patch"
    assert call.input == PATCH
    assert server.script.requests[-1].tool_grammar is not None  # "required" forced it
    check_prompt_holds(server, body)


def test_a_structured_output_request(server: ScriptedServer) -> None:
    server.script.chunks = ['{"name": "Science Fair", "date": "Friday", "participants": []}']
    body = transcript("docs_structured_output")
    response = strict_client(server.url).responses.create(**body)
    assert json.loads(response.output_text)["name"] == "Science Fair"
    sent = server.script.requests[-1]
    assert isinstance(sent.format, dict) and sent.format["required"] == [
        "name",
        "date",
        "participants",
    ]
    assert response.text is not None and response.text.format is not None
    assert response.text.format.type == "json_schema"
    assert response.metadata == {"source": "structured-outputs guide"}
