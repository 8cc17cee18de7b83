"""`/v1/responses` end to end through the real app with the scripted runner (`tests.fakes`),
driven by the official `openai` SDK with strict validation (every response and event is
checked against the SDK's pydantic types) and by raw HTTP where the wire itself matters.

The model carries Qwen 3's template (tools and a `<think>` trace), so the same server shows
text, reasoning items and function calls; what reached the runner (the rendered prompt,
sampling options, the call grammar, `truncate`) is checked too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from ollamapy.server.responses_store import ResponseStore, StoredResponse
from tests.conftest import TESTDATA
from tests.fakes import MODEL, Script, ScriptedServer, serve_scripted
from tests.openai.responses_checks import parse_events, parse_response, strict_client

QWEN3_TEMPLATE = (TESTDATA / "qwen3.gotmpl").read_text()
QWEN3 = f'TEMPLATE """{QWEN3_TEMPLATE}"""\nPARAMETER stop "<|im_end|>"\n'
TRACE = ["<think>\nThe user", " greets.\n</think>\n\n", "Hi", " there"]
CALL = ['<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>']
WEATHER: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@pytest.fixture
def script() -> Script:
    return Script(chunks=list(TRACE))


@pytest.fixture
def server(tmp_path: Path, script: Script) -> Iterator[ScriptedServer]:
    yield from serve_scripted(tmp_path, script, QWEN3)


def client(server: ScriptedServer) -> openai.OpenAI:
    return strict_client(server.url)


def post(server: ScriptedServer, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/responses", json={"model": MODEL, **body}, timeout=30)


def sse_events(response: httpx.Response) -> list[dict[str, Any]]:
    """The raw events of an SSE body, each checked to carry its type as the event name."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = []
    for frame in response.text.split("\n\n"):
        if not frame:
            continue
        name, data = frame.split("\n")
        event = json.loads(data.removeprefix("data: "))
        assert name == f"event: {event['type']}"
        events.append(event)
    return events


def last_prompt(server: ScriptedServer) -> str:
    return server.script.requests[-1].prompt


# ----------------------------------------------------------------------------- create


def test_a_response_with_a_trace_and_text(server: ScriptedServer) -> None:
    result = client(server).responses.create(
        model=MODEL, input="Hello", instructions="Be brief", max_output_tokens=50, temperature=0.5
    )
    assert result.object == "response" and result.id.startswith("resp_")
    assert result.status == "completed" and result.model == MODEL
    assert result.output_text == "Hi there"
    reasoning = result.output[0]
    assert reasoning.type == "reasoning"
    assert reasoning.summary[0].text == "The user greets.\n"  # as /api/chat splits it
    assert result.instructions == "Be brief" and result.max_output_tokens == 50
    assert result.usage is not None and result.usage.output_tokens == len(TRACE)
    sent = server.script.requests[-1]
    assert sent.prompt == (
        "<|im_start|>system\n\nBe brief<|im_end|>\n<|im_start|>user\nHello /think<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert (sent.options.temperature, sent.options.top_p, sent.options.num_predict) == (
        0.5,
        1.0,
        50,
    )


def test_streaming_sends_the_responses_event_sequence(server: ScriptedServer) -> None:
    events = sse_events(post(server, {"input": "Hello", "stream": True}))
    parsed = parse_events(events)
    assert [e.type for e in parsed] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert server.script.requests[-1].stream is True


def test_the_sdk_streams_and_assembles_the_response(server: ScriptedServer) -> None:
    sdk = client(server)
    events = list(sdk.responses.create(model=MODEL, input="Hello", stream=True))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "Hi there"
    with sdk.responses.stream(model=MODEL, input="Hello") as stream:
        final = stream.get_final_response()
    assert final.output_text == "Hi there" and final.status == "completed"


def test_a_tool_call_is_a_function_call_item(server: ScriptedServer, script: Script) -> None:
    script.chunks = list(CALL)
    result = client(server).responses.create(model=MODEL, input="Weather?", tools=[WEATHER])
    (call,) = result.output
    assert call.type == "function_call"
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "Paris"})
    assert call.call_id and result.output_text == ""
    assert result.tools[0].type == "function" and result.tools[0].name == "get_weather"
    assert "<tools>" in last_prompt(server) and "get_weather" in last_prompt(server)


def test_a_custom_tool_call_and_a_hosted_tool_left_out(
    server: ScriptedServer, script: Script
) -> None:
    call = '{"name": "apply_patch", "arguments": {"input": "*** Begin Patch"}}'
    script.chunks = [f"<tool_call>\n{call}\n</tool_call>"]
    tools: Any = [{"type": "custom", "name": "apply_patch"}, {"type": "web_search"}]
    result = client(server).responses.create(model=MODEL, input="Fix it", tools=tools)
    (call,) = result.output
    assert call.type == "custom_tool_call"
    assert (call.name, call.input) == ("apply_patch", "*** Begin Patch")
    assert [tool.type for tool in result.tools] == ["custom"]  # what the model was offered
    assert "web_search" not in last_prompt(server)


def test_a_streamed_tool_call_sends_its_arguments_events(
    server: ScriptedServer, script: Script
) -> None:
    script.chunks = list(CALL)
    events = sse_events(post(server, {"input": "Weather?", "tools": [WEATHER], "stream": True}))
    parse_events(events)
    (done,) = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert json.loads(done["arguments"]) == {"city": "Paris"}


def test_a_forced_tool_choice_sends_the_call_grammar(
    server: ScriptedServer, script: Script
) -> None:
    script.chunks = list(CALL)
    result = client(server).responses.create(
        model=MODEL,
        input="Weather?",
        tools=[WEATHER],
        tool_choice={"type": "function", "name": "get_weather"},
        parallel_tool_calls=False,
    )
    assert result.output[0].type == "function_call"
    assert result.tool_choice.type == "function"  # type: ignore[union-attr]
    grammar = server.script.requests[-1].tool_grammar
    assert grammar is not None and grammar.max_calls == 1
    assert grammar.schema["properties"]["name"]["const"] == "get_weather"


def test_max_output_tokens_reached_is_an_incomplete_response(
    server: ScriptedServer, script: Script
) -> None:
    script.done_reason = "length"
    result = client(server).responses.create(model=MODEL, input="Hello", max_output_tokens=4)
    assert result.status == "incomplete"
    assert result.incomplete_details is not None
    assert result.incomplete_details.reason == "max_output_tokens"


def test_a_runner_failure_mid_stream_is_an_error_event_and_response_failed(
    server: ScriptedServer, script: Script
) -> None:
    script.fail_after = 1
    response = post(server, {"input": "Hello", "stream": True})
    events = sse_events(response)
    parse_events(events)
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    failed_id = events[-1]["response"]["id"]
    assert httpx.get(f"{server.url}/v1/responses/{failed_id}").status_code == 404  # not kept


def test_a_copied_model_name_serves_as_an_openai_model(server: ScriptedServer) -> None:
    """`ollama cp MODEL gpt-5-codex`, as Ollama documents for clients with fixed names."""
    copied = httpx.post(
        f"{server.url}/api/copy", json={"source": MODEL, "destination": "gpt-5-codex"}, timeout=30
    )
    assert copied.status_code == 200
    result = client(server).responses.create(model="gpt-5-codex", input="Hello")
    assert result.model == "gpt-5-codex" and result.output_text == "Hi there"


# ----------------------------------------------------------------------------- state


def test_previous_response_id_continues_the_conversation(server: ScriptedServer) -> None:
    sdk = client(server)
    first = sdk.responses.create(model=MODEL, input="Hello", instructions="Be brief")
    second = sdk.responses.create(model=MODEL, input="And again?", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    prompt = last_prompt(server)
    assert "<|im_start|>user\nHello<|im_end|>" in prompt
    assert "<|im_start|>assistant\nHi there<|im_end|>" in prompt
    assert prompt.endswith("<|im_start|>user\nAnd again? /think<|im_end|>\n<|im_start|>assistant\n")
    assert "Be brief" not in prompt  # instructions are per request, as OpenAI's


def test_a_tool_loop_through_previous_response_id(server: ScriptedServer, script: Script) -> None:
    sdk = client(server)
    script.chunks = list(CALL)
    asked = sdk.responses.create(model=MODEL, input="Weather in Paris?", tools=[WEATHER])
    call = asked.output[0]
    assert call.type == "function_call"
    script.chunks = ["It is 18C."]
    answered = sdk.responses.create(
        model=MODEL,
        previous_response_id=asked.id,
        tools=[WEATHER],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "18C"}],
    )
    assert answered.output_text == "It is 18C."
    prompt = last_prompt(server)
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city":"Paris"}}' in prompt
    assert "<tool_response>\n18C\n</tool_response>" in prompt


def test_a_stored_response_survives_a_server_restart(tmp_path: Path) -> None:
    script = Script(chunks=["Hi"])
    for first in serve_scripted(tmp_path, script, QWEN3):
        earlier = strict_client(first.url).responses.create(model=MODEL, input="Remember 42")
    for second in serve_scripted(tmp_path, script, QWEN3):
        sdk = strict_client(second.url)
        assert sdk.responses.retrieve(earlier.id).output_text == "Hi"
        sdk.responses.create(model=MODEL, input="What number?", previous_response_id=earlier.id)
        assert "Remember 42" in second.script.requests[-1].prompt
    assert (tmp_path / "responses" / "responses.sqlite3").is_file()  # beside the models dir


def test_input_items_list_what_a_response_was_given(server: ScriptedServer, script: Script) -> None:
    sdk = client(server)
    script.chunks = list(CALL)
    asked = sdk.responses.create(
        model=MODEL,
        input=[{"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]}],
        tools=[WEATHER],
    )
    call = asked.output[0]
    assert call.type == "function_call"
    script.chunks = ["Sunny."]
    answered = sdk.responses.create(
        model=MODEL,
        previous_response_id=asked.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "18C"}],
    )
    newest_first = list(sdk.responses.input_items.list(answered.id))
    assert [item.type for item in newest_first] == [
        "function_call_output",
        "function_call",
        "message",
    ]
    assert newest_first[1].id == call.id  # the output item, as the first response wrote it
    paged = list(sdk.responses.input_items.list(answered.id, order="asc", limit=1))
    assert [item.id for item in paged] == [item.id for item in reversed(newest_first)]
    with pytest.raises(openai.NotFoundError):
        sdk.responses.input_items.list("resp_missing")


def test_get_returns_the_stored_object_and_delete_removes_it(server: ScriptedServer) -> None:
    sdk = client(server)
    created = sdk.responses.create(model=MODEL, input="Hello", metadata={"k": "v"})
    got = httpx.get(f"{server.url}/v1/responses/{created.id}")
    assert got.status_code == 200
    parse_response(got.json())
    assert got.json() == created.model_dump(mode="json", exclude_unset=True)
    deleted = httpx.delete(f"{server.url}/v1/responses/{created.id}")
    assert deleted.json() == {"id": created.id, "object": "response", "deleted": True}
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.delete(created.id)


def test_store_false_keeps_nothing(server: ScriptedServer) -> None:
    sdk = client(server)
    created = sdk.responses.create(model=MODEL, input="Hello", store=False)
    assert created.store is False
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(created.id)
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.responses.create(model=MODEL, input="x", previous_response_id=created.id)
    assert caught.value.code == "previous_response_not_found"


def test_a_streamed_response_is_stored_once_it_ends(server: ScriptedServer) -> None:
    events = sse_events(post(server, {"input": "Hello", "stream": True}))
    final = events[-1]["response"]
    assert httpx.get(f"{server.url}/v1/responses/{final['id']}").json() == final


# ----------------------------------------------------------------------------- conversations


def test_a_conversation_collects_its_turns(server: ScriptedServer) -> None:
    sdk = client(server)
    seed: Any = [{"type": "message", "role": "user", "content": "My name is Ada."}]
    conversation = sdk.conversations.create(items=seed, metadata={"topic": "names"})
    assert conversation.id.startswith("conv_") and conversation.metadata == {"topic": "names"}
    first = sdk.responses.create(model=MODEL, input="Hello", conversation=conversation.id)
    assert first.conversation is not None and first.conversation.id == conversation.id
    assert "My name is Ada." in last_prompt(server)
    sdk.responses.create(model=MODEL, input="Who am I?", conversation={"id": conversation.id})
    prompt = last_prompt(server)
    ada, hello, answer = (prompt.index(t) for t in ("My name is Ada.", "Hello", "Hi there"))
    assert ada < hello < answer < prompt.index("Who am I?")
    assert sdk.conversations.retrieve(conversation.id).id == conversation.id
    deleted = sdk.conversations.delete(conversation.id)
    assert deleted.deleted is True and deleted.object == "conversation.deleted"
    with pytest.raises(openai.NotFoundError):
        sdk.conversations.retrieve(conversation.id)
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.responses.create(model=MODEL, input="x", conversation=conversation.id)
    assert caught.value.code == "conversation_not_found"


def test_a_conversation_survives_a_restart(tmp_path: Path) -> None:
    script = Script(chunks=["Hi"])
    for first in serve_scripted(tmp_path, script, QWEN3):
        sdk = strict_client(first.url)
        conversation = sdk.conversations.create()
        sdk.responses.create(model=MODEL, input="Remember 42", conversation=conversation.id)
    for second in serve_scripted(tmp_path, script, QWEN3):
        sdk = strict_client(second.url)
        sdk.responses.create(model=MODEL, input="What number?", conversation=conversation.id)
        assert "Remember 42" in second.script.requests[-1].prompt


def test_a_conversation_with_a_bad_item_is_refused(server: ScriptedServer) -> None:
    response = httpx.post(
        f"{server.url}/v1/conversations", json={"items": [{"type": "bogus"}]}, timeout=30
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "items[0]"


class SlowStore(ResponseStore):
    """The app's store, taking half a second to save a response."""

    def __init__(self, store: ResponseStore) -> None:
        super().__init__(store.path.parent)

    def put(self, stored: StoredResponse) -> None:
        time.sleep(0.5)
        super().put(stored)


def test_a_streamed_response_is_stored_before_its_terminal_event(server: ScriptedServer) -> None:
    """An agent continues the moment it reads `response.completed`: by then the response
    must be retrievable (checked while the stream is still open, with a store that is slow
    to write, so saving after the last event would lose the race)."""
    server.live.app.state.responses = SlowStore(server.live.app.state.responses)
    body = {"model": MODEL, "input": "Hello", "stream": True}
    with httpx.stream("POST", f"{server.url}/v1/responses", json=body, timeout=30) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and '"type":"response.completed"' in line:
                response_id = json.loads(line.removeprefix("data: "))["response"]["id"]
                got = httpx.get(f"{server.url}/v1/responses/{response_id}", timeout=30)
                assert got.status_code == 200, got.text
                break
        else:
            pytest.fail("no response.completed event")


# ----------------------------------------------------------------------------- truncation

SMALL = "PARAMETER num_ctx 24\n"
LONG: Any = [
    {"role": "user", "content": "one two three four five six seven eight nine ten"},
    {"role": "assistant", "content": "eleven twelve thirteen fourteen fifteen"},
    {"role": "user", "content": "sixteen seventeen eighteen nineteen twenty"},
]


@pytest.fixture
def small(server: ScriptedServer) -> str:
    """A model whose context (24 scripted tokens) the LONG conversation does not fit."""
    body = {"model": "small", "modelfile": f"FROM {MODEL}\n{QWEN3}{SMALL}", "stream": False}
    assert httpx.post(f"{server.url}/api/create", json=body, timeout=30).status_code == 200
    return "small"


@pytest.mark.parametrize("stream", [False, True])
def test_input_past_the_context_is_a_400_by_default(
    server: ScriptedServer, small: str, stream: bool
) -> None:
    response = post(server, {"model": small, "input": LONG, "stream": stream})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "context_length_exceeded" and error["param"] == "input"
    assert "exceeds the context length" in error["message"]
    assert 'truncation "auto"' in error["message"]
    assert server.script.requests[-1].truncate is False


def test_truncation_auto_drops_the_oldest_items(server: ScriptedServer, small: str) -> None:
    result = client(server).responses.create(model=small, input=LONG, truncation="auto")
    assert result.status == "completed" and result.truncation == "auto"
    prompt = last_prompt(server)
    assert "sixteen" in prompt and "one two three" not in prompt


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        pytest.param({"input": [{"type": "computer_call"}]}, 400, "input[0]", id="bad-item"),
        pytest.param(
            {"input": "x", "tools": [{"type": "namespace"}]}, 400, "tools[0]", id="unknown-tool"
        ),
        pytest.param(
            {"input": "x", "conversation": "conv_nope"}, 400, "conversation", id="no-conversation"
        ),
        pytest.param({"input": "x", "truncation": "sometimes"}, 400, None, id="bad-truncation"),
        pytest.param({"input": 7}, 400, None, id="input-not-string-or-list"),
        pytest.param({"input": "x", "model": "missing"}, 404, None, id="unknown-model"),
    ],
)
def test_bad_requests_are_openai_error_objects(
    server: ScriptedServer, body: dict[str, Any], status: int, param: str | None
) -> None:
    response = post(server, body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert error["param"] == param
    assert not server.script.requests  # refused before a runner was asked


def test_a_body_that_is_not_json_is_a_400(server: ScriptedServer) -> None:
    response = httpx.post(f"{server.url}/v1/responses", content=b"{", timeout=30)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
