"""OpenAI requests → native requests: options, formats, messages, tools, images."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from pydantic import ValidationError

from ollamapy.errors import BadRequestError
from ollamapy.openai import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    to_chat_request,
    to_embed_request,
    to_generate_request,
)

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
USER = [{"role": "user", "content": "hi"}]


def chat(**fields: Any) -> Any:
    return to_chat_request(
        ChatCompletionRequest.model_validate({"model": "m", "messages": USER, **fields})
    )


def complete(**fields: Any) -> Any:
    return to_generate_request(CompletionRequest.model_validate({"model": "m", **fields}))


# ----------------------------------------------------------------------------- options


def test_absent_temperature_and_top_p_are_openai_defaults() -> None:
    native = chat()
    assert native.options == {"temperature": 1.0, "top_p": 1.0}
    assert native.stream is False
    assert native.format is None and native.think is None and native.tools is None


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"max_tokens": 7}, {"num_predict": 7}),
        ({"max_completion_tokens": 9}, {"num_predict": 9}),
        ({"max_tokens": 7, "max_completion_tokens": 9}, {"num_predict": 9}),
        ({"temperature": 0}, {"temperature": 0.0}),
        ({"top_p": 0.5}, {"top_p": 0.5}),
        ({"seed": 42}, {"seed": 42}),
        ({"stop": "END"}, {"stop": ["END"]}),
        ({"stop": ["a", "b"]}, {"stop": ["a", "b"]}),
        ({"frequency_penalty": 0.5}, {"frequency_penalty": 0.5}),
        ({"presence_penalty": -0.25}, {"presence_penalty": -0.25}),
    ],
)
def test_chat_options(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    options = chat(**fields).options
    assert {key: options[key] for key in expected} == expected


def test_chat_without_penalties_leaves_them_to_the_model() -> None:
    assert "frequency_penalty" not in chat().options
    assert "presence_penalty" not in chat().options


@pytest.mark.parametrize(
    ("response_format", "expected"),
    [
        ({"type": "text"}, None),
        ({"type": "json_object"}, "json"),
        (
            {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
            {"type": "object"},
        ),
        ({"type": "json_schema", "json_schema": {"name": "x"}}, "json"),
    ],
)
def test_response_format(response_format: dict[str, Any], expected: object) -> None:
    assert chat(response_format=response_format).format == expected


def test_unknown_response_format_is_400() -> None:
    with pytest.raises(BadRequestError, match="response_format"):
        chat(response_format={"type": "yaml"})


@pytest.mark.parametrize(
    ("fields", "think"),
    [
        ({"reasoning_effort": "high"}, "high"),
        ({"reasoning": {"effort": "low"}}, "low"),
        ({"reasoning_effort": "none"}, False),
        ({"reasoning": {"effort": "medium"}, "reasoning_effort": "high"}, "medium"),
        ({"reasoning_effort": "max"}, "max"),
        ({"reasoning_effort": "minimal"}, "low"),
        ({"reasoning_effort": "xhigh"}, "max"),
        ({"reasoning_effort": "ultra"}, "max"),
        ({}, None),
    ],
    ids=["effort", "object", "none", "object-first", "max", "minimal", "xhigh", "ultra", "unset"],
)
def test_reasoning_effort_is_think(fields: dict[str, Any], think: object) -> None:
    assert chat(**fields).think == think


def test_bad_reasoning_effort_is_400() -> None:
    with pytest.raises(BadRequestError) as caught:
        chat(reasoning_effort="extreme")
    assert caught.value.message == (
        'invalid reasoning value: "extreme" (must be "minimal", "low", "medium", "high", '
        '"xhigh", "ultra", "max", or "none")'
    )


@pytest.mark.parametrize(
    "fields",
    [
        {"temperature": "hot"},
        {"stop": 3},
        {"max_tokens": 1.5},
        {"stream": "yes"},
        {"messages": "hi"},
        {"messages": [{"content": "no role"}]},
        {"messages": [{"role": "user", "content": [{"type": "audio", "audio": "x"}]}]},
    ],
)
def test_wrong_types_fail_validation(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ChatCompletionRequest.model_validate({"model": "m", "messages": USER, **fields})


def test_empty_messages_is_400() -> None:
    with pytest.raises(BadRequestError, match="messages"):
        chat(messages=[])


def test_tools_pass_through() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    assert chat(tools=tools).tools == tools


# ----------------------------------------------------------------------------- messages


def test_plain_messages_keep_role_and_content() -> None:
    messages = [{"role": "system", "content": "be brief"}, *USER]
    native = chat(messages=messages).messages
    assert [(m.role, m.content) for m in native] == [("system", "be brief"), ("user", "hi")]


def test_content_parts_become_text_and_images() -> None:
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
    ]
    native = chat(messages=[{"role": "user", "content": content}]).messages
    assert [(m.role, m.content, m.images) for m in native] == [
        ("user", "What is this?", None),
        ("user", "", [PNG]),
    ]


@pytest.mark.parametrize(
    "prefix",
    [
        "data:image/jpeg;base64,",
        "data:image/webp;base64,",
        "data:image/gif;base64,",
        "data:;base64,",
        "",
    ],
)
def test_image_url_as_bare_string(prefix: str) -> None:
    content = [{"type": "image_url", "image_url": prefix + PNG}]
    native = chat(messages=[{"role": "user", "content": content}]).messages
    assert native[0].images == [PNG]


@pytest.mark.parametrize(
    "url",
    ["https://example.com/cat.png", "data:text/plain;base64," + PNG, "data:;base64,@@@", "@@@"],
)
def test_unusable_image_is_400(url: str) -> None:
    content = [{"type": "image_url", "image_url": {"url": url}}]
    with pytest.raises(BadRequestError, match="image"):
        chat(messages=[{"role": "user", "content": content}])


def assistant_call(arguments: str = '{"city": "Paris"}', content: Any = None) -> dict[str, Any]:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "weather", "arguments": arguments},
    }
    return {"role": "assistant", "content": content, "tool_calls": [call]}


def test_assistant_tool_calls_decode_their_arguments() -> None:
    native = chat(messages=[*USER, assistant_call()]).messages[1]
    assert native.role == "assistant" and native.content == ""
    assert native.tool_calls is not None
    call = native.tool_calls[0]
    assert (call.id, call.function.name, call.function.arguments) == (
        "call_1",
        "weather",
        {"city": "Paris"},
    )


def test_empty_tool_arguments_are_an_empty_object() -> None:
    native = chat(messages=[*USER, assistant_call(arguments="")]).messages[1]
    assert native.tool_calls is not None and native.tool_calls[0].function.arguments == {}


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]"])
def test_bad_tool_arguments_are_400(arguments: str) -> None:
    with pytest.raises(BadRequestError, match="tool call arguments"):
        chat(messages=[*USER, assistant_call(arguments=arguments)])


def test_tool_calls_ride_on_the_last_part() -> None:
    message = assistant_call(content=[{"type": "text", "text": "a"}, {"type": "text", "text": "b"}])
    native = chat(messages=[*USER, message]).messages
    assert [m.content for m in native[1:]] == ["a", "b"]
    assert native[1].tool_calls is None and native[2].tool_calls is not None


def test_null_content_without_tool_calls_is_400() -> None:
    with pytest.raises(BadRequestError, match="content"):
        chat(messages=[{"role": "user", "content": None}])


def test_tool_result_is_named_by_its_call_id() -> None:
    result = {"role": "tool", "tool_call_id": "call_1", "content": "22C"}
    native = chat(messages=[*USER, assistant_call(), result]).messages[2]
    assert (native.role, native.content, native.tool_name) == ("tool", "22C", "weather")


def test_tool_result_with_a_name_keeps_it() -> None:
    result = {"role": "tool", "name": "clock", "tool_call_id": "call_1", "content": "noon"}
    assert chat(messages=[*USER, assistant_call(), result]).messages[2].tool_name == "clock"


def test_unknown_tool_call_id_leaves_the_name_empty() -> None:
    result = {"role": "tool", "tool_call_id": "nope", "content": "x"}
    assert chat(messages=[*USER, result]).messages[1].tool_name is None


def test_assistant_reasoning_is_thinking() -> None:
    message = {"role": "assistant", "content": "4", "reasoning": "2+2"}
    assert chat(messages=[*USER, message]).messages[1].thinking == "2+2"


# ----------------------------------------------------------------------------- completions


def test_completion_defaults() -> None:
    native = complete(prompt="Once")
    assert native.prompt == "Once" and native.stream is False and native.suffix is None
    assert native.options == {
        "temperature": 1.0,
        "top_p": 1.0,
        "frequency_penalty": 0.0,
        "presence_penalty": 0.0,
    }


def test_completion_fields() -> None:
    native = complete(
        prompt=["Once"],
        suffix="end",
        max_tokens=5,
        temperature=0.2,
        top_p=0.3,
        seed=1,
        stop="\n",
        stream=True,
        frequency_penalty=0.1,
        presence_penalty=0.2,
    )
    assert native.prompt == "Once" and native.suffix == "end" and native.stream is True
    assert native.options == {
        "temperature": 0.2,
        "top_p": 0.3,
        "num_predict": 5,
        "seed": 1,
        "stop": ["\n"],
        "frequency_penalty": 0.1,
        "presence_penalty": 0.2,
    }


def test_several_prompts_are_400() -> None:
    with pytest.raises(BadRequestError, match="prompt"):
        complete(prompt=["a", "b"])


# ----------------------------------------------------------------------------- embeddings


@pytest.mark.parametrize("value", ["one", ["a", "b"], [1, 2, 3], [[1, 2], [3]]])
def test_embedding_input_passes_through(value: object) -> None:
    request = EmbeddingRequest.model_validate({"model": "e", "input": value, "dimensions": 8})
    native = to_embed_request(request)
    assert (native.model, native.input, native.dimensions) == ("e", value, 8)


@pytest.mark.parametrize(
    ("fields", "match"), [({"input": []}, "input"), ({"input": "x", "dimensions": 0}, "dimensions")]
)
def test_bad_embedding_requests_are_400(fields: dict[str, Any], match: str) -> None:
    with pytest.raises(BadRequestError, match=match):
        to_embed_request(EmbeddingRequest.model_validate({"model": "e", **fields}))


@pytest.mark.parametrize("fields", [{}, {"input": 3}, {"input": "x", "encoding_format": "hex"}])
def test_malformed_embedding_requests_fail_validation(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        EmbeddingRequest.model_validate({"model": "e", **fields})


def test_tool_result_keeps_its_call_id_for_the_template() -> None:
    result = {"role": "tool", "tool_call_id": "call_1", "content": "22C"}
    assert chat(messages=[*USER, assistant_call(), result]).messages[2].tool_call_id == "call_1"
