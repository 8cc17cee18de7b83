"""The /v1 routes end to end, driven by the official `openai` SDK over real HTTP."""

from __future__ import annotations

import json
import sys
import types
from typing import Any

import httpx
import openai
import pytest

from ollamapy.api.types import EmbedRequest
from tests.openai.conftest import Server

Event = dict[str, Any]
USER: Any = [{"role": "user", "content": "Say hi"}]


def chat_event(content: str = "", **message: Any) -> Event:
    return {
        "model": "smollm2:135m",
        "created_at": "2024-01-01T00:00:00Z",
        "message": {"role": "assistant", "content": content, **message},
        "done": False,
    }


def chat_done(reason: str = "stop", **message: Any) -> Event:
    final = chat_event(**message)
    return {**final, "done": True, "done_reason": reason, "prompt_eval_count": 9, "eval_count": 2}


def gen_event(text: str, done: bool = False) -> Event:
    event: Event = {"model": "smollm2:135m", "response": text, "done": done}
    if done:
        event |= {"done_reason": "length", "prompt_eval_count": 5, "eval_count": 4}
    return event


# ----------------------------------------------------------------------------- chat


def test_chat_completion(server: Server) -> None:
    server.native.chat = [chat_event("Hi"), chat_event(" there"), chat_done()]
    result = server.client().chat.completions.create(
        model="smollm2:135m", messages=USER, max_tokens=20, stop="\n", seed=3
    )
    assert result.object == "chat.completion" and result.id.startswith("chatcmpl-")
    assert result.model == "smollm2:135m" and result.system_fingerprint == "fp_ollama"
    assert result.choices[0].message.role == "assistant"
    assert result.choices[0].message.content == "Hi there"
    assert result.choices[0].finish_reason == "stop"
    assert result.usage is not None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (9, 2)
    assert result.usage.total_tokens == 11
    native = server.native.requests[0]
    assert native.options == {
        "temperature": 1.0,
        "top_p": 1.0,
        "num_predict": 20,
        "stop": ["\n"],
        "seed": 3,
    }
    assert [(m.role, m.content) for m in native.messages] == [("user", "Say hi")]


def test_chat_stream_with_usage(server: Server) -> None:
    server.native.chat = [chat_event("Hi"), chat_event(" there"), chat_done("length")]
    stream = server.client().chat.completions.create(
        model="smollm2:135m",
        messages=USER,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hi there"
    assert chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 11
    assert server.native.requests[0].stream is True
    assert server.native.closed == 1


def test_chat_stream_without_usage_has_no_usage_chunk(server: Server) -> None:
    server.native.chat = [chat_event("Hi"), chat_done()]
    chunks = list(
        server.client().chat.completions.create(model="smollm2:135m", messages=USER, stream=True)
    )
    assert len(chunks) == 2 and all(c.choices and c.usage is None for c in chunks)


def test_stream_helper_assembles_tool_calls(server: Server) -> None:
    call = {"function": {"name": "weather", "arguments": {"city": "Paris"}}}
    server.native.chat = [chat_event("Let me check."), chat_done(tool_calls=[call])]
    tools: Any = [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    with server.client().chat.completions.stream(
        model="smollm2:135m", messages=USER, tools=tools
    ) as stream:
        final = stream.get_final_completion()
    message = final.choices[0].message
    assert message.role == "assistant" and message.content == "Let me check."
    assert message.tool_calls is not None and len(message.tool_calls) == 1
    tool_call: Any = message.tool_calls[0]
    assert tool_call.function.name == "weather"
    assert json.loads(tool_call.function.arguments) == {"city": "Paris"}
    assert final.choices[0].finish_reason == "tool_calls"
    assert server.native.requests[0].tools == tools


def test_tool_round_trip_and_images_reach_the_native_request(server: Server) -> None:
    server.native.chat = [chat_done()]
    messages: Any = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,aGVsbG8="}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "look", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "a cat"},
    ]
    server.client().chat.completions.create(
        model="smollm2:135m",
        messages=messages,
        response_format={"type": "json_object"},
        temperature=0.2,
    )
    native = server.native.requests[0]
    assert [(m.role, m.content, m.images, m.tool_name) for m in native.messages] == [
        ("user", "What is this?", None, None),
        ("user", "", ["aGVsbG8="], None),
        ("assistant", "", None, None),
        ("tool", "a cat", None, "look"),
    ]
    assert native.format == "json" and native.options["temperature"] == 0.2


def test_chat_with_an_unknown_model_is_not_found(server: Server) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        server.client().chat.completions.create(model="nope", messages=USER)
    assert caught.value.status_code == 404
    body: Any = caught.value.body
    assert body["type"] == "not_found_error" and "nope" in body["message"]


@pytest.mark.parametrize(
    "extra",
    [
        {"temperature": "hot"},
        {"response_format": {"type": "yaml"}},
        {"messages": []},
        {
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": "http://x"}]}
            ]
        },
    ],
)
def test_chat_with_a_bad_argument_is_bad_request(server: Server, extra: dict[str, Any]) -> None:
    arguments: dict[str, Any] = {"model": "smollm2:135m", "messages": USER}
    if "messages" in extra:
        arguments["messages"] = extra.pop("messages")
    with pytest.raises(openai.BadRequestError) as caught:
        server.client().chat.completions.create(**arguments, extra_body=extra)
    body: Any = caught.value.body
    assert body["type"] == "invalid_request_error"
    assert server.native.requests == []


def test_error_mid_stream_reaches_the_client(server: Server) -> None:
    server.native.chat = [chat_event("Hi"), chat_event("!"), chat_done()]
    server.native.fail_after = 1
    stream = server.client().chat.completions.create(
        model="smollm2:135m", messages=USER, stream=True
    )
    with pytest.raises(openai.APIError, match="runner crashed"):
        list(stream)


def test_error_before_the_first_chunk_keeps_its_status(server: Server) -> None:
    server.native.chat = [chat_done()]
    server.native.fail_after = 0
    with pytest.raises(openai.InternalServerError):
        server.client().chat.completions.create(model="smollm2:135m", messages=USER, stream=True)


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b""])
def test_malformed_bodies_are_openai_400s(server: Server, body: bytes) -> None:
    response = httpx.post(f"{server.url}/v1/chat/completions", content=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    assert set(error) == {"message", "type", "param", "code"}


def test_sse_wire_format(server: Server) -> None:
    server.native.chat = [chat_event("Hi"), chat_done()]
    body = {"model": "smollm2:135m", "messages": USER, "stream": True}
    response = httpx.post(f"{server.url}/v1/chat/completions", json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    frames = response.text.split("\n\n")
    assert frames[-2:] == ["data: [DONE]", ""]
    assert all(frame.startswith("data: {") for frame in frames[:-2])


# ----------------------------------------------------------------------------- completions


def test_completion(server: Server) -> None:
    server.native.generate = [gen_event("Once"), gen_event(" upon"), gen_event("", done=True)]
    result = server.client().completions.create(
        model="smollm2:135m", prompt="Tell me", max_tokens=4, suffix="END", echo=True
    )
    assert result.object == "text_completion" and result.id.startswith("cmpl-")
    assert result.choices[0].text == "Tell meOnce upon"
    assert result.choices[0].finish_reason == "length"
    assert result.usage is not None and result.usage.total_tokens == 9
    native = server.native.requests[0]
    assert (native.prompt, native.suffix, native.options["num_predict"]) == ("Tell me", "END", 4)


def test_completion_stream(server: Server) -> None:
    server.native.generate = [gen_event("Once"), gen_event(" upon"), gen_event("", done=True)]
    chunks = list(
        server.client().completions.create(
            model="smollm2:135m",
            prompt="Tell me",
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "Once upon"
    assert chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None


def test_completion_with_an_unknown_model_is_not_found(server: Server) -> None:
    with pytest.raises(openai.NotFoundError):
        server.client().completions.create(model="missing", prompt="x")


# ----------------------------------------------------------------------------- models


def test_list_models(server: Server) -> None:
    models = list(server.client().models.list())
    assert [(m.id, m.object, m.owned_by, m.created) for m in models] == [
        ("smollm2:135m", "model", "library", 1714564800),
        ("me/mine:latest", "model", "me", 1714564800),
    ]


@pytest.mark.parametrize(("name", "owner"), [("smollm2:135m", "library"), ("me/mine", "me")])
def test_retrieve_model(server: Server, name: str, owner: str) -> None:
    model = server.client().models.retrieve(name)
    assert (model.id, model.owned_by, model.created) == (name, owner, 1714564800)


@pytest.mark.parametrize("name", ["missing", "bad..name!"])
def test_retrieve_unknown_model_is_not_found(server: Server, name: str) -> None:
    with pytest.raises(openai.NotFoundError):
        server.client().models.retrieve(name)


# ----------------------------------------------------------------------------- embeddings


@pytest.fixture
def fake_embed(monkeypatch: pytest.MonkeyPatch) -> list[EmbedRequest]:
    """Install a stand-in for the lead's `ollamapy.server.embed` module."""
    seen: list[EmbedRequest] = []

    async def embed(state: Any, body: EmbedRequest) -> Event:
        seen.append(body)
        count = 1 if isinstance(body.input, str) else len(body.input)
        vectors = [[0.5 * (i + 1), -0.25] for i in range(count)]
        return {"model": body.model, "embeddings": vectors, "prompt_eval_count": 7}

    module = types.ModuleType("ollamapy.server.embed")
    module.embed = embed  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ollamapy.server.embed", module)
    return seen


def test_embeddings_with_the_sdk_default_base64(server: Server, fake_embed: Any) -> None:
    result = server.client().embeddings.create(model="smollm2:135m", input=["a", "b"])
    assert [d.embedding for d in result.data] == [[0.5, -0.25], [1.0, -0.25]]
    assert [d.index for d in result.data] == [0, 1]
    assert result.usage.prompt_tokens == 7 and result.model == "smollm2:135m"
    assert fake_embed[0].input == ["a", "b"]


def test_embeddings_as_floats_with_dimensions(server: Server, fake_embed: Any) -> None:
    body = {"model": "m", "input": "a", "encoding_format": "float", "dimensions": 2}
    response = httpx.post(f"{server.url}/v1/embeddings", json=body)
    assert response.json()["data"][0]["embedding"] == [0.5, -0.25]
    assert fake_embed[0].dimensions == 2


def test_embeddings_with_a_bad_format_is_bad_request(server: Server, fake_embed: Any) -> None:
    with pytest.raises(openai.BadRequestError):
        server.client().embeddings.create(model="m", input="a", encoding_format="hex")  # type: ignore[arg-type]
    assert fake_embed == []
