"""Responses API requests → the native chat request (`openai.responses_api`), pure: items
as native messages, tools and tool_choice reshaped, sampling, think and truncation, and the
400s (with OpenAI's `param`) for what is malformed or unsupported."""

from __future__ import annotations

from typing import Any

import pytest

from ollamapy.api.types import ChatRequest, Message
from ollamapy.errors import BadRequestError
from ollamapy.openai.responses_api import (
    CustomTool,
    ResponsesRequest,
    ResponsesRequestError,
    check_request,
    dump_items,
    parse_items,
    request_items,
    to_chat_request,
    toolset,
)

PNG = "iVBORw0KGgo="


def native(**body: Any) -> ChatRequest:
    request = ResponsesRequest.model_validate({"model": "m", **body})
    check_request(request)
    return to_chat_request(request, request_items(request.input))


def roles_and_text(messages: list[Message]) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in messages]


def test_string_input_is_one_user_message_after_the_instructions() -> None:
    request = native(input="Say hi", instructions="Be brief")
    assert roles_and_text(request.messages) == [("system", "Be brief"), ("user", "Say hi")]


def test_message_items_map_roles_and_join_text_parts() -> None:
    request = native(
        input=[
            {"role": "developer", "content": "Rules"},
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Look:"},
                    {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"},
                    {"type": "input_text", "text": "what is it?"},
                ],
            },
        ]
    )
    assert roles_and_text(request.messages) == [
        ("system", "Rules"),
        ("user", "Look:\nwhat is it?"),
    ]
    assert request.messages[1].images == [PNG]


TOOL_LOOP: Any = [
    {"role": "user", "content": "Weather in Paris?"},
    {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Ask it"}]},
    {
        "type": "function_call",
        "call_id": "call_1",
        "name": "get_weather",
        "arguments": '{"city":"Paris"}',
    },
    {"type": "function_call", "call_id": "call_2", "name": "get_time", "arguments": "{}"},
    {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
    {
        "type": "function_call_output",
        "call_id": "call_2",
        "output": [{"type": "input_text", "text": "noon"}],
    },
]


def test_a_tool_loop_becomes_one_assistant_turn_and_named_tool_results() -> None:
    messages = native(input=TOOL_LOOP).messages
    assert [m.role for m in messages] == ["user", "assistant", "tool", "tool"]
    turn = messages[1]
    assert turn.thinking == "Ask it"  # the reasoning item rides on the turn it preceded
    assert turn.tool_calls is not None
    calls = [(c.function.name, dict(c.function.arguments), c.id) for c in turn.tool_calls]
    assert calls == [("get_weather", {"city": "Paris"}, "call_1"), ("get_time", {}, "call_2")]
    results = [(m.content, m.tool_name, m.tool_call_id) for m in messages[2:]]
    assert results == [("18C", "get_weather", "call_1"), ("noon", "get_time", "call_2")]


def test_previous_output_items_replay_as_the_assistant_turn() -> None:
    messages = native(
        input=[
            {"role": "user", "content": "Hi"},
            {
                "type": "reasoning",
                "id": "rs_1",
                "summary": [],
                "content": [{"type": "reasoning_text", "text": "greet"}],
            },
            {
                "type": "message",
                "id": "msg_1",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": "Hello", "annotations": []}],
            },
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": ""},
            {"role": "user", "content": "Again"},
        ]
    ).messages
    assert roles_and_text(messages) == [("user", "Hi"), ("assistant", "Hello"), ("user", "Again")]
    assert messages[1].thinking == "greet"
    assert messages[1].tool_calls is not None and messages[1].tool_calls[0].function.name == "f"


def test_items_round_trip_through_their_stored_json() -> None:
    items = request_items(TOOL_LOOP)
    assert parse_items(dump_items(items)) == items


def test_function_tools_and_a_named_tool_choice_take_the_chat_shape() -> None:
    request = native(
        input="x",
        tools=[
            {"type": "function", "name": "f", "description": "F", "parameters": {"type": "object"}},
            {"type": "function", "name": "g", "strict": True},
        ],
        tool_choice={"type": "function", "name": "f"},
        parallel_tool_calls=False,
    )
    assert request.tools == [
        {
            "type": "function",
            "function": {"name": "f", "description": "F", "parameters": {"type": "object"}},
        },
        {
            "type": "function",
            "function": {
                "name": "g",
                "description": "",
                "parameters": {"type": "object", "properties": {}},
            },
        },
    ]
    assert request.tool_choice == {"type": "function", "function": {"name": "f"}}
    assert request.parallel_tool_calls is False


def test_sampling_effort_format_and_truncation() -> None:
    request = native(
        input="x",
        temperature=0.2,
        max_output_tokens=7,
        reasoning={"effort": "high"},
        text={"format": {"type": "json_schema", "name": "s", "schema": {"type": "object"}}},
        truncation="auto",
    )
    assert request.options == {"temperature": 0.2, "top_p": 1.0, "num_predict": 7}
    assert request.think == "high"
    assert request.format == {"type": "object"}
    assert request.truncate is True
    defaults = native(input="x")
    assert defaults.truncate is False  # OpenAI's default truncation is "disabled"
    assert defaults.think is None and defaults.format is None
    assert defaults.options == {"temperature": 1.0, "top_p": 1.0}


@pytest.mark.parametrize(
    ("body", "message", "param"),
    [
        pytest.param(
            {"input": [{"type": "web_search_call"}]},
            "input[0]: unsupported input item type 'web_search_call'",
            "input[0]",
            id="unknown-item",
        ),
        pytest.param(
            {"input": [{"role": "wizard", "content": "x"}]},
            "input[0]: invalid role 'wizard'",
            "input[0].role",
            id="bad-role",
        ),
        pytest.param(
            {"input": [{"type": "function_call", "call_id": "c", "name": "f"}]},
            "input[0]: arguments: Field required",
            "input[0]",
            id="call-without-arguments",
        ),
        pytest.param(
            {"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{"}]},
            "function_call 'c': arguments are not JSON",
            "input",
            id="call-arguments-not-json",
        ),
        pytest.param(
            {"input": "x", "tools": [{"type": "namespace", "name": "n", "tools": []}]},
            "tools[0]: unsupported tool type 'namespace'",
            "tools[0]",
            id="unknown-tool-type",
        ),
        pytest.param(
            {"input": "x", "tools": [{"type": "custom"}]},
            "tools[0]: name: Field required",
            "tools[0]",
            id="custom-tool-without-name",
        ),
        pytest.param(
            {"input": "x", "tool_choice": {"type": "allowed_tools"}},
            "tool_choice must be",
            "tool_choice",
            id="allowed-tools-choice",
        ),
        pytest.param(
            {"input": "x", "conversation": "conv_1", "previous_response_id": "resp_1"},
            "previous_response_id and conversation cannot be used together",
            "conversation",
            id="conversation-and-previous-response",
        ),
        pytest.param(
            {"input": "x", "conversation": {"name": "c"}},
            "conversation must be an id",
            "conversation",
            id="conversation-without-id",
        ),
        pytest.param({"input": []}, "input must not be empty", "input", id="empty-input"),
        pytest.param(
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
            "file_id is not supported",
            "input",
            id="image-by-file-id",
        ),
        pytest.param(
            {"input": "x", "text": {"format": {"type": "yaml"}}},
            "invalid text.format type 'yaml'",
            "text.format.type",
            id="bad-format",
        ),
    ],
)
def test_malformed_or_unsupported_requests_are_400s_naming_the_param(
    body: dict[str, Any], message: str, param: str
) -> None:
    with pytest.raises(ResponsesRequestError) as caught:
        native(**body)
    assert message in caught.value.message
    assert caught.value.param == param
    assert caught.value.status_code == 400


def test_an_unknown_effort_is_a_400() -> None:
    with pytest.raises(BadRequestError, match="invalid reasoning value"):
        native(input="x", reasoning={"effort": "loud"})


PATCH_TOOL: Any = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Edit files.",
    "format": {"type": "grammar", "syntax": "lark", "definition": "start: LINE+"},
}


def test_a_custom_tool_is_a_function_of_one_text_input() -> None:
    request = native(
        input="x", tools=[PATCH_TOOL], tool_choice={"type": "custom", "name": "apply_patch"}
    )
    assert request.tools == [
        {
            "type": "function",
            "function": {
                "name": "apply_patch",
                "description": "Edit files.\n\nThe input follows this lark grammar:\nstart: LINE+",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "input": {"type": "string", "description": "The whole input, as text"}
                    },
                    "required": ["input"],
                },
            },
        }
    ]
    assert request.tool_choice == {"type": "function", "function": {"name": "apply_patch"}}


def test_custom_tool_calls_and_outputs_replay_as_calls_with_an_input_argument() -> None:
    messages = native(
        input=[
            {"role": "user", "content": "Fix it"},
            {
                "type": "custom_tool_call",
                "call_id": "c1",
                "name": "apply_patch",
                "input": "*** Begin",
            },
            {"type": "custom_tool_call_output", "call_id": "c1", "output": "Done"},
        ]
    ).messages
    assert [m.role for m in messages] == ["user", "assistant", "tool"]
    assert messages[1].tool_calls is not None
    (call,) = messages[1].tool_calls
    assert (call.function.name, dict(call.function.arguments)) == (
        "apply_patch",
        {"input": "*** Begin"},
    )
    assert (messages[2].content, messages[2].tool_name) == ("Done", "apply_patch")


def test_hosted_tools_are_left_out_of_what_the_model_sees() -> None:
    tools = toolset([{"type": "web_search"}, PATCH_TOOL, {"type": "image_generation"}])
    assert tools.left_out == ("web_search", "image_generation")
    assert tools.tools == (CustomTool.model_validate(PATCH_TOOL),)
    assert tools.custom_names == frozenset({"apply_patch"})
    assert native(input="x", tools=[{"type": "web_search"}]).tools is None
