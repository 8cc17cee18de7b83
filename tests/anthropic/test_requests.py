"""Anthropic requests -> native chat requests (pure translation, no server)."""

from __future__ import annotations

from typing import Any

import pytest

from ollamapy.anthropic import CountTokensRequest, MessagesRequest, thinking_budget, to_chat_request
from ollamapy.api.types import Message, ToolCall, ToolCallFunction
from ollamapy.errors import BadRequestError

TOOL: Any = {"name": "ls", "description": "List", "input_schema": {"type": "object"}}
PNG = {"type": "base64", "media_type": "image/png", "data": "aGVsbG8="}


def request(**fields: Any) -> MessagesRequest:
    body = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    return MessagesRequest.model_validate(body | fields)


def test_the_simplest_request() -> None:
    native = to_chat_request(request())
    assert native.messages == [Message(role="user", content="hi")]
    assert native.options == {"num_predict": 10}  # nothing else set: the model's own apply
    assert (native.stream, native.think, native.tools, native.tool_choice) == (
        False,
        None,
        None,
        None,
    )


def test_sampling_fields() -> None:
    native = to_chat_request(
        request(temperature=0.5, top_p=0.9, top_k=40, stop_sequences=["a", "b"], stream=True)
    )
    assert native.options == {
        "num_predict": 10,
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 40,
        "stop": ["a", "b"],
    }
    assert native.stream is True


@pytest.mark.parametrize(
    ("system", "expected"),
    [
        ("Be kind.", [Message(role="system", content="Be kind.")]),
        (
            [{"type": "text", "text": "A"}, {"type": "text", "text": "B", "cache_control": {}}],
            [Message(role="system", content="A\n\nB")],
        ),
        ("", []),
        ([], []),
    ],
    ids=["string", "blocks", "empty-string", "no-blocks"],
)
def test_system(system: Any, expected: list[Message]) -> None:
    assert to_chat_request(request(system=system)).messages[:-1] == expected


def test_blocks_of_a_user_message_are_one_message_after_its_tool_results() -> None:
    messages: Any = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Need the tool.", "signature": "s"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "ls", "input": {"path": "."}},
                {"type": "redacted_thinking", "data": "xyz"},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Here:"},
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.txt"},
                {"type": "image", "source": PNG},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "content": [{"type": "text", "text": "no"}, {"type": "text", "text": "way"}],
                    "is_error": True,
                },
                {"type": "document", "source": {"type": "text", "data": "doc"}, "title": "T"},
            ],
        },
    ]
    native = to_chat_request(request(messages=messages)).messages
    assert native == [
        Message(role="user", content="weather?"),
        Message(
            role="assistant",
            content="Checking.",
            thinking="Need the tool.",
            tool_calls=[
                ToolCall(
                    function=ToolCallFunction(name="ls", arguments={"path": "."}), id="toolu_1"
                )
            ],
        ),
        Message(role="tool", content="a.txt", tool_name="ls", tool_call_id="toolu_1"),
        Message(role="tool", content="Error: no\n\nway", tool_call_id="toolu_2"),
        Message(role="user", content="Here:\n\nT\n\ndoc", images=["aGVsbG8="]),
    ]


def test_a_message_of_only_tool_results_is_only_tool_messages() -> None:
    messages: Any = [
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "x"}]}
    ]
    assert [m.role for m in to_chat_request(request(messages=messages)).messages] == ["tool"]


def test_tools_are_native_function_tools() -> None:
    native = to_chat_request(request(tools=[TOOL, {**TOOL, "name": "x", "type": "custom"}]))
    assert native.tools == [
        {
            "type": "function",
            "function": {"name": "ls", "description": "List", "parameters": {"type": "object"}},
        },
        {
            "type": "function",
            "function": {"name": "x", "description": "List", "parameters": {"type": "object"}},
        },
    ]


@pytest.mark.parametrize(
    ("choice", "native", "parallel"),
    [
        ({"type": "auto"}, "auto", None),
        ({"type": "any"}, "required", None),
        ({"type": "none"}, "none", None),
        ({"type": "tool", "name": "ls"}, {"type": "function", "function": {"name": "ls"}}, None),
        ({"type": "any", "disable_parallel_tool_use": True}, "required", False),
        ({"type": "auto", "disable_parallel_tool_use": False}, "auto", True),
    ],
)
def test_tool_choice(choice: Any, native: Any, parallel: bool | None) -> None:
    translated = to_chat_request(request(tools=[TOOL], tool_choice=choice))
    assert (translated.tool_choice, translated.parallel_tool_calls) == (native, parallel)


@pytest.mark.parametrize(
    ("thinking", "think", "budget"),
    [
        ({"type": "enabled", "budget_tokens": 2048}, True, 2048),
        ({"type": "adaptive"}, True, None),
        ({"type": "disabled"}, False, None),
        (None, None, None),
    ],
)
def test_thinking(thinking: Any, think: bool | None, budget: int | None) -> None:
    translated = request(thinking=thinking)
    assert to_chat_request(translated).think is think
    assert thinking_budget(translated) == budget


def test_count_tokens_translates_to_the_same_prompt_without_sampling() -> None:
    fields: Any = {
        "model": "m",
        "system": "S",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [TOOL],
        "tool_choice": {"type": "none"},
        "thinking": {"type": "disabled"},
    }
    counted = to_chat_request(CountTokensRequest.model_validate(fields))
    sent = to_chat_request(MessagesRequest.model_validate({**fields, "max_tokens": 5}))
    assert counted.options is None and counted.stream is False
    assert (counted.messages, counted.tools, counted.tool_choice, counted.think) == (
        sent.messages,
        sent.tools,
        sent.tool_choice,
        sent.think,
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"messages": []}, "at least one message"),
        ({"tools": [TOOL], "tool_choice": {"type": "tool"}}, "needs the name"),
        ({"tools": [TOOL], "tool_choice": {"type": "tool", "name": "rm"}}, "not in tools"),
        ({"tool_choice": {"type": "any"}}, "at least one tool"),
        ({"tools": [{"type": "bash_20250124", "name": "bash"}]}, "not supported"),
        ({"tools": [{"name": "no_schema"}]}, "not supported"),
        ({"thinking": {"type": "enabled", "budget_tokens": 0}}, "budget_tokens"),
        (
            {
                "tools": [TOOL],
                "tool_choice": {"type": "any"},
                "thinking": {"type": "enabled", "budget_tokens": 1024},
            },
            "thinking may not be enabled",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image", "source": {"type": "url", "url": "http://x"}}
                        ],
                    }
                ]
            },
            "image URLs",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image", "source": {**PNG, "media_type": "image/tiff"}}
                        ],
                    }
                ]
            },
            "media_type",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image", "source": {**PNG, "data": "@@"}}],
                    }
                ]
            },
            "base64",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "document", "source": {**PNG, "media_type": "application/pdf"}}
                        ],
                    }
                ]
            },
            "document",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "tool_use", "id": "t", "name": "ls", "input": {}}],
                    }
                ]
            },
            "assistant messages",
        ),
        (
            {
                "messages": [
                    {"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "t"}]}
                ]
            },
            "user messages",
        ),
    ],
)
def test_what_cannot_be_served_is_a_bad_request(fields: Any, message: str) -> None:
    with pytest.raises(BadRequestError, match=message):
        to_chat_request(request(**fields))
