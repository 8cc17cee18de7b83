"""`/v1/messages` and `/v1/messages/count_tokens` end to end through the official
`anthropic` SDK and raw HTTP, against the real app with a scripted runner (see conftest)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from ollamapy.llm import TraceBudget
from tests.anthropic.conftest import Server
from tests.fakes import MODEL, TOOLS_TEMPLATE, TOOLS_TEMPLATE_TEXT, word_tokens
from tests.server.test_thinking_api import QWEN3, TRACE

HI: Any = [{"role": "user", "content": "Say hi"}]
SAY_HI = "<|im_start|>user\nSay hi<|im_end|>\n<|im_start|>assistant\n"
"""HI as the scripted model's ChatML template renders it."""
WEATHER: Any = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
CALL = ['<tool_call>{"name": "get_weather", ', '"arguments": {"city": "Paris"}}</tool_call>']
"""What the scripted model writes to call WEATHER (Qwen's format, TOOLS_TEMPLATE's)."""


def tokens(prompt: str) -> int:
    """What the scripted runner counts for a prompt."""
    return len(word_tokens(prompt))


def sse(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    """The (event name, payload) pairs of an SSE body, checking the two agree."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = []
    for frame in response.text.split("\n\n"):
        if not frame:
            continue
        name_line, data_line = frame.split("\n")
        name = name_line.removeprefix("event: ")
        payload = json.loads(data_line.removeprefix("data: "))
        assert payload["type"] == name
        events.append((name, payload))
    return events


def post(server: Server, path: str, body: dict[str, Any]) -> httpx.Response:
    headers = {"x-api-key": "anything", "anthropic-version": "2023-06-01"}
    return httpx.post(f"{server.url}{path}", json=body, headers=headers, timeout=30)


# ----------------------------------------------------------------------------- messages


def test_a_message_is_the_native_answer_in_anthropic_shape(server: Server) -> None:
    server.script.chunks = ["Hi", " there"]
    message = server.anthropic().messages.create(model=MODEL, max_tokens=20, messages=HI)
    assert message.type == "message" and message.role == "assistant"
    assert message.id.startswith("msg_") and message.model == MODEL
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == "Hi there"  # type: ignore[union-attr]
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
    assert message.usage.input_tokens == tokens(SAY_HI)
    assert message.usage.output_tokens == 2
    assert message.usage.cache_read_input_tokens == 0
    sent = server.sent()
    assert sent.prompt == SAY_HI and sent.stream is False
    assert sent.options.num_predict == 20


def test_sampling_fields_reach_the_runner_and_unset_ones_keep_the_models(server: Server) -> None:
    server.derive("tuned", "PARAMETER temperature 0.3\nPARAMETER top_k 7\n")
    server.anthropic().messages.create(  # this SDK sends sampling fields as extra_body
        model="tuned",
        max_tokens=5,
        messages=HI,
        stop_sequences=["END", "\n\n"],
        extra_body={"top_p": 0.5},
    )
    options = server.sent().options
    assert (options.temperature, options.top_k) == (0.3, 7)  # the model's own
    assert (options.top_p, options.stop, options.num_predict) == (0.5, ("END", "\n\n"), 5)
    server.script.requests.clear()
    server.anthropic().messages.create(
        model="tuned", max_tokens=5, messages=HI, extra_body={"temperature": 0.9, "top_k": 3}
    )
    assert (server.sent().options.temperature, server.sent().options.top_k) == (0.9, 3)


@pytest.mark.parametrize(
    "system",
    [
        "Be brief.\n\nVery brief.",
        [
            {"type": "text", "text": "Be brief."},
            {"type": "text", "text": "Very brief.", "cache_control": {"type": "ephemeral"}},
        ],
    ],
    ids=["string", "blocks"],
)
def test_system_as_a_string_or_blocks_is_one_system_message(server: Server, system: Any) -> None:
    server.anthropic().messages.create(
        model=MODEL, max_tokens=5, system=system, messages=HI, metadata={"user_id": "u1"}
    )
    assert server.sent().prompt == (
        "<|im_start|>system\nBe brief.\n\nVery brief.<|im_end|>\n" + SAY_HI
    )


def test_multi_turn_with_text_blocks(server: Server) -> None:
    messages: Any = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "One"}, {"type": "text", "text": "Two"}],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "Three"}]},
        {"role": "user", "content": "Four"},
    ]
    server.anthropic().messages.create(model=MODEL, max_tokens=5, messages=messages)
    assert server.sent().prompt == (
        "<|im_start|>user\nOne\n\nTwo<|im_end|>\n<|im_start|>assistant\nThree<|im_end|>\n"
        "<|im_start|>user\nFour<|im_end|>\n<|im_start|>assistant\n"
    )


def test_stop_reasons(server: Server) -> None:
    client = server.anthropic()
    server.script.stop_sequence = "END"
    message = client.messages.create(model=MODEL, max_tokens=9, messages=HI, stop_sequences=["END"])
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "END")
    server.script.stop_sequence = "<|im_end|>"  # a Modelfile's stop: the turn's own end
    message = client.messages.create(model=MODEL, max_tokens=9, messages=HI, stop_sequences=["END"])
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
    server.script.stop_sequence = None
    server.script.done_reason = "length"
    message = client.messages.create(model=MODEL, max_tokens=2, messages=HI)
    assert (message.stop_reason, message.stop_sequence) == ("max_tokens", None)


def test_usage_splits_the_prompt_into_evaluated_and_cache_read(server: Server) -> None:
    server.script.prompt_cached = 5
    message = server.anthropic().messages.create(model=MODEL, max_tokens=5, messages=HI)
    assert message.usage.cache_read_input_tokens == 5
    assert message.usage.input_tokens == tokens(SAY_HI) - 5
    assert message.usage.cache_creation_input_tokens == 0


# ----------------------------------------------------------------------------- streaming


def test_stream_event_sequence(server: Server) -> None:
    server.script.chunks = ["Hi", " there"]
    response = post(
        server, "/v1/messages", {"model": MODEL, "max_tokens": 9, "messages": HI, "stream": True}
    )
    events = sse(response)
    assert [name for name, _ in events] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None
    assert events[2][1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    assert [e["delta"] for _, e in events[3:5]] == [
        {"type": "text_delta", "text": "Hi"},
        {"type": "text_delta", "text": " there"},
    ]
    delta = events[6][1]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] == 2
    assert delta["usage"]["input_tokens"] == tokens(SAY_HI)
    assert server.sent().stream is True


def test_sdk_stream_helper_assembles_the_message(server: Server) -> None:
    server.script.chunks = ["Count", ": 1, 2"]
    server.script.prompt_cached = 3
    with server.anthropic().messages.stream(model=MODEL, max_tokens=9, messages=HI) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Count: 1, 2"
    assert final.content[0].text == text  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens == tokens(SAY_HI) - 3
    assert final.usage.cache_read_input_tokens == 3
    assert [entry.idle for entry in server.scripted.live.scheduler.loaded()] == [True]


# ----------------------------------------------------------------------------- tools


def test_tool_use_comes_back_as_a_tool_use_block(server: Server) -> None:
    server.derive("tools", TOOLS_TEMPLATE)
    server.script.chunks = ["Let me check.", *CALL]
    message = server.anthropic().messages.create(
        model="tools", max_tokens=50, messages=HI, tools=[WEATHER]
    )
    assert [block.type for block in message.content] == ["text", "tool_use"]
    use: Any = message.content[1]
    assert use.id.startswith("toolu_") and use.name == "get_weather"
    assert use.input == {"city": "Paris"}
    assert message.stop_reason == "tool_use"
    tools = json.loads(server.sent().prompt.removeprefix("<tools>").partition("</tools>")[0])
    assert tools["function"]["name"] == "get_weather"
    assert tools["function"]["parameters"]["required"] == ["city"]


def test_streamed_tool_use_sends_its_input_as_json_delta(server: Server) -> None:
    server.derive("tools", TOOLS_TEMPLATE)
    server.script.chunks = ["Checking.", *CALL]
    body = {"model": "tools", "max_tokens": 50, "messages": HI, "tools": [WEATHER], "stream": True}
    events = sse(post(server, "/v1/messages", body))
    names = [name for name, _ in events]
    assert names[2:] == [
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    block = events[5][1]
    assert block["index"] == 1 and block["content_block"]["type"] == "tool_use"
    assert block["content_block"]["input"] == {}
    assert events[6][1]["delta"] == {"type": "input_json_delta", "partial_json": '{"city":"Paris"}'}
    assert events[8][1]["delta"]["stop_reason"] == "tool_use"
    with server.anthropic().messages.stream(
        model="tools", max_tokens=50, messages=HI, tools=[WEATHER]
    ) as stream:
        final = stream.get_final_message()
    assert final.content[1].input == {"city": "Paris"}  # type: ignore[union-attr]


def test_tool_results_answer_the_calls_before_them(server: Server) -> None:
    server.derive("tools", TOOLS_TEMPLATE)
    messages: Any = [
        HI[0],
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Oslo"},
                }
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "Snow"},
                {"type": "text", "text": "And tomorrow?"},
            ],
        },
    ]
    server.anthropic().messages.create(
        model="tools", max_tokens=5, messages=messages, tools=[WEATHER]
    )
    prompt = server.sent().prompt.partition("</tools>")[2]
    assert prompt == (
        SAY_HI.removesuffix("<|im_start|>assistant\n")
        + '<|im_start|>assistant\n<tool_call>{"name":"get_weather","arguments":{"city":"Oslo"}}'
        "</tool_call><|im_end|>\n<|im_start|>tool\nSnow<|im_end|>\n"
        "<|im_start|>user\nAnd tomorrow?<|im_end|>\n<|im_start|>assistant\n"
    )


@pytest.mark.parametrize(
    ("choice", "forced", "offered"),
    [
        ({"type": "auto"}, None, True),
        ({"type": "any"}, "any", True),
        ({"type": "tool", "name": "get_weather"}, "get_weather", True),
        ({"type": "none"}, None, False),
    ],
    ids=["auto", "any", "tool", "none"],
)
def test_tool_choice_maps_onto_the_native_grammar(
    server: Server, choice: Any, forced: str | None, offered: bool
) -> None:
    server.derive("tools", TOOLS_TEMPLATE)
    other = {**WEATHER, "name": "get_time"}
    server.anthropic().messages.create(
        model="tools", max_tokens=50, messages=HI, tools=[WEATHER, other], tool_choice=choice
    )
    sent = server.sent()
    assert sent.prompt.startswith("<tools>") is offered
    if forced is None:
        assert sent.tool_grammar is None
        return
    assert sent.tool_grammar is not None and sent.tool_grammar.prefix == "<tool_call>"
    names = json.dumps(sent.tool_grammar.schema)
    assert '"get_weather"' in names
    assert ('"get_time"' in names) is (forced == "any")


def test_disable_parallel_tool_use_allows_one_call(server: Server) -> None:
    server.derive("tools", TOOLS_TEMPLATE)
    server.script.chunks = [*CALL, *CALL]
    message = server.anthropic().messages.create(
        model="tools",
        max_tokens=50,
        messages=HI,
        tools=[WEATHER],
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
    )
    assert [block.type for block in message.content] == ["tool_use"]


# ----------------------------------------------------------------------------- thinking


def test_thinking_comes_back_as_thinking_blocks(server: Server) -> None:
    server.derive("qwen3", QWEN3)
    server.script.chunks = list(TRACE)
    message = server.anthropic().messages.create(
        model="qwen3",
        max_tokens=99,
        messages=HI,
        thinking={"type": "enabled", "budget_tokens": 1024},
    )
    assert [block.type for block in message.content] == ["thinking", "text"]
    thinking: Any = message.content[0]
    assert thinking.thinking == "Count the rs: three.\n" and thinking.signature == ""
    assert message.content[1].text == "There are three."  # type: ignore[union-attr]
    assert "Say hi /think<|im_end|>" in server.sent().prompt
    # the budget goes to the runner with the template's tags (Qwen 3 lets the model open them)
    assert server.sent().trace_budget == TraceBudget(1024, "<think>", "</think>", opened=False)


@pytest.mark.parametrize(
    "thinking", [{"type": "adaptive"}, {"type": "enabled"}], ids=["adaptive", "no-budget"]
)
def test_no_budget_no_limit(server: Server, thinking: Any) -> None:
    server.derive("qwen3", QWEN3)
    server.script.chunks = list(TRACE)
    post(
        server,
        "/v1/messages",
        {"model": "qwen3", "max_tokens": 9, "messages": HI, "thinking": thinking},
    )
    assert server.sent().trace_budget is None


def test_streamed_thinking_is_a_thinking_block_then_a_text_block(server: Server) -> None:
    server.derive("qwen3", QWEN3)
    server.script.chunks = list(TRACE)
    body = {"model": "qwen3", "max_tokens": 99, "messages": HI, "stream": True}
    events = sse(
        post(
            server, "/v1/messages", {**body, "thinking": {"type": "enabled", "budget_tokens": 2000}}
        )
    )
    starts = [e["content_block"]["type"] for name, e in events if name == "content_block_start"]
    assert starts == ["thinking", "text"]
    kinds = [e["delta"]["type"] for name, e in events if name == "content_block_delta"]
    assert kinds[0] == "thinking_delta" and kinds[-1] == "text_delta"
    trace = "".join(
        e["delta"].get("thinking", "") for name, e in events if name == "content_block_delta"
    )
    assert trace == "Count the rs: three.\n"
    with server.anthropic().messages.stream(
        model="qwen3",
        max_tokens=99,
        messages=HI,
        thinking={"type": "enabled", "budget_tokens": 2000},
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].thinking == "Count the rs: three.\n"  # type: ignore[union-attr]


def test_thinking_disabled_and_thinking_blocks_sent_back(server: Server) -> None:
    server.derive("qwen3", QWEN3)
    server.script.chunks = ["Fine."]
    messages: Any = [
        HI[0],
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "They greet me.", "signature": "sig"},
                {"type": "text", "text": "Hi!"},
            ],
        },
        {"role": "user", "content": "Again"},
    ]
    message = server.anthropic().messages.create(
        model="qwen3", max_tokens=9, messages=messages, thinking={"type": "disabled"}
    )
    assert [block.type for block in message.content] == ["text"]
    assert server.sent().prompt.endswith(
        "Again /no_think<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )


def test_thinking_asked_of_a_model_that_cannot_think_is_relaxed(server: Server) -> None:
    """Claude Code asks every model to think; as Ollama does, a model without thinking
    answers without it rather than refusing (the native API still refuses)."""
    server.script.chunks = ["Hi"]
    thinking: Any = {"type": "enabled", "budget_tokens": 1024}
    message = server.anthropic().messages.create(
        model=MODEL, max_tokens=9, messages=HI, thinking=thinking
    )
    assert [block.type for block in message.content] == ["text"]
    assert server.sent().prompt == SAY_HI and server.sent().trace_budget is None
    counted = server.anthropic().messages.count_tokens(model=MODEL, messages=HI, thinking=thinking)
    assert counted.input_tokens == tokens(SAY_HI)
    native = httpx.post(
        f"{server.url}/api/chat", json={"model": MODEL, "messages": HI, "think": True}
    )
    assert native.status_code == 400


# ----------------------------------------------------------------------------- images


def test_base64_images_reach_the_native_images(server: Server) -> None:
    server.create_vision("vision", TOOLS_TEMPLATE_TEXT)
    png = (Path(__file__).parents[1] / "testdata" / "vision" / "checker.png").read_bytes()
    image = {"type": "base64", "media_type": "image/png", "data": base64.b64encode(png).decode()}
    messages: Any = [
        {
            "role": "user",
            "content": [{"type": "image", "source": image}, {"type": "text", "text": "What?"}],
        }
    ]
    server.anthropic().messages.create(model="vision", max_tokens=5, messages=messages)
    assert (
        server.sent().prompt == "<|im_start|>user\n[img-0]What?<|im_end|>\n<|im_start|>assistant\n"
    )


# ----------------------------------------------------------------------------- aliases


def test_a_model_copied_to_a_claude_name_answers_to_it(server: Server) -> None:
    copied = httpx.post(
        f"{server.url}/api/copy", json={"source": MODEL, "destination": "claude-3-5-sonnet"}
    )
    assert copied.status_code == 200, copied.text
    message = server.anthropic().messages.create(
        model="claude-3-5-sonnet", max_tokens=5, messages=HI
    )
    assert message.model == "claude-3-5-sonnet"
    assert server.sent().prompt == SAY_HI


# ----------------------------------------------------------------------------- count_tokens


def test_count_tokens_is_the_prompt_the_message_would_evaluate(server: Server) -> None:
    server.derive("tools", TOOLS_TEMPLATE)
    request: Any = {"model": "tools", "messages": HI, "system": "Be brief.", "tools": [WEATHER]}
    counted = server.anthropic().messages.count_tokens(**request)
    message = server.anthropic().messages.create(max_tokens=5, **request)
    assert counted.input_tokens == message.usage.input_tokens == tokens(server.sent().prompt)
    assert server.script.tokenized == [server.sent().prompt]  # the model's own tokenizer


# ----------------------------------------------------------------------------- errors


def test_an_unknown_model_is_a_not_found_error(server: Server) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        server.anthropic().messages.create(model="nope", max_tokens=5, messages=HI)
    body: Any = caught.value.body
    assert body["type"] == "error" and body["error"]["type"] == "not_found_error"
    assert "nope" in body["error"]["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"messages": HI},  # max_tokens missing
        {"messages": HI, "max_tokens": 0},
        {"messages": [], "max_tokens": 5},
        {"messages": [{"role": "system", "content": "x"}], "max_tokens": 5},
        {"messages": HI, "max_tokens": 5, "temperature": "hot"},
        {"messages": [{"role": "user", "content": [{"type": "video"}]}], "max_tokens": 5},
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image", "source": {"type": "url", "url": "http://x"}}],
                }
            ],
            "max_tokens": 5,
        },
        {
            "messages": HI,
            "max_tokens": 5,
            "tools": [WEATHER],
            "tool_choice": {"type": "tool", "name": "x"},
        },
        {
            "messages": HI,
            "max_tokens": 5,
            "tools": [{"type": "web_search_20250305", "name": "web_search"}],
        },
        {
            "messages": HI,
            "max_tokens": 5,
            "tools": [WEATHER],
            "tool_choice": {"type": "any"},
            "thinking": {"type": "enabled", "budget_tokens": 1024},
        },
    ],
    ids=[
        "no-max-tokens",
        "zero-max-tokens",
        "no-messages",
        "system-role",
        "bad-temperature",
        "unknown-block",
        "image-url",
        "unknown-tool-choice",
        "server-tool",
        "thinking-with-forced-tool",
    ],
)
def test_bad_requests_are_invalid_request_errors(server: Server, body: dict[str, Any]) -> None:
    response = post(server, "/v1/messages", {"model": MODEL, **body})
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert error["error"]["message"]
    assert server.script.started == 0 and server.script.requests == []


def test_sdk_raises_bad_request_error(server: Server) -> None:
    with pytest.raises(anthropic.BadRequestError, match="max_tokens"):
        server.anthropic().messages.create(model=MODEL, max_tokens=0, messages=HI)


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b""])
def test_malformed_bodies_are_anthropic_400s(server: Server, raw: bytes) -> None:
    for path in ("/v1/messages", "/v1/messages/count_tokens"):
        response = httpx.post(f"{server.url}{path}", content=raw)
        assert response.status_code == 400
        assert response.json()["error"]["type"] == "invalid_request_error"


def test_a_failure_mid_stream_is_an_error_event(server: Server) -> None:
    server.script.chunks = ["Hi", "!"]
    server.script.fail_after = 1
    body = {"model": MODEL, "max_tokens": 9, "messages": HI, "stream": True}
    events = sse(post(server, "/v1/messages", body))
    assert events[-1] == (
        "error",
        {"type": "error", "error": {"type": "api_error", "message": "runner crashed"}},
    )
    assert "message_stop" not in [name for name, _ in events]
    client = server.anthropic()
    with (
        pytest.raises(anthropic.APIStatusError, match="runner crashed"),
        client.messages.stream(model=MODEL, max_tokens=9, messages=HI) as stream,
    ):
        stream.get_final_message()
    assert [entry.idle for entry in server.scripted.live.scheduler.loaded()] == [True]


def test_a_failure_before_the_first_event_keeps_its_status(server: Server) -> None:
    server.script.fail_after = 0
    with pytest.raises(anthropic.InternalServerError, match="runner crashed") as caught:
        server.anthropic().messages.create(model=MODEL, max_tokens=9, messages=HI, stream=True)
    body: Any = caught.value.body
    assert body["error"]["type"] == "api_error"
