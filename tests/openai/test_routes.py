"""The /v1 routes end to end, driven by the official `openai` SDK over real HTTP, through the
real app with a scripted runner (see conftest): what the client gets, and what reached the
runner (the rendered prompt and the sampling options)."""

from __future__ import annotations

import base64
import io
import json
import math
from datetime import datetime
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

from tests.fakes import MODEL, TOOLS_TEMPLATE, TOOLS_TEMPLATE_TEXT, word_tokens
from tests.openai.conftest import Server

USER: Any = [{"role": "user", "content": "Say hi"}]
SAY_HI = "<|im_start|>user\nSay hi<|im_end|>\n<|im_start|>assistant\n"
"""USER as the scripted model's ChatML template renders it."""

WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def prompt_tokens(prompt: str) -> int:
    """What the scripted runner counts for a prompt (it is sent untokenized when it fits)."""
    return len(word_tokens(prompt))


# ----------------------------------------------------------------------------- chat


def test_chat_completion(server: Server) -> None:
    server.script.chunks = ["Hi", " there"]
    result = server.client().chat.completions.create(
        model=MODEL, messages=USER, max_tokens=20, stop="\n", seed=3
    )
    assert result.object == "chat.completion" and result.id.startswith("chatcmpl-")
    assert result.model == MODEL and result.system_fingerprint == "fp_ollama"
    assert result.choices[0].message.role == "assistant"
    assert result.choices[0].message.content == "Hi there"
    assert result.choices[0].finish_reason == "stop"
    sent = server.sent()
    assert sent.prompt == SAY_HI and sent.stream is False
    options = sent.options
    assert (options.temperature, options.top_p) == (1.0, 1.0)  # OpenAI's defaults
    assert (options.num_predict, options.stop, options.seed) == (20, ("\n",), 3)
    assert result.usage is not None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (
        prompt_tokens(SAY_HI),
        2,
    )
    assert result.usage.total_tokens == prompt_tokens(SAY_HI) + 2


def test_chat_stream_with_usage(server: Server) -> None:
    server.script.chunks = ["Hi", " there"]
    server.script.done_reason = "length"
    stream = server.client().chat.completions.create(
        model=MODEL,
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
    assert chunks[-1].usage.total_tokens == prompt_tokens(SAY_HI) + 2
    assert server.sent().stream is True
    runners = server.scripted.live.scheduler.loaded()
    assert [entry.idle for entry in runners] == [True]  # released when the stream ended
    assert server.script.cancelled == 0  # ... after the runner had finished


def test_chat_stream_without_usage_has_no_usage_chunk(server: Server) -> None:
    server.script.chunks = ["Hi"]
    chunks = list(server.client().chat.completions.create(model=MODEL, messages=USER, stream=True))
    assert len(chunks) == 2 and all(c.choices and c.usage is None for c in chunks)


def test_stream_helper_assembles_tool_calls(server: Server) -> None:
    server.derive("tools", TOOLS_TEMPLATE)
    server.script.chunks = [
        "Let me check.",
        '<tool_call>{"name": "weather", ',
        '"arguments": {"city": "Paris"}}</tool_call>',
    ]
    with server.client().chat.completions.stream(
        model="tools", messages=USER, tools=[WEATHER]
    ) as stream:
        final = stream.get_final_completion()
    message = final.choices[0].message
    assert message.role == "assistant" and message.content == "Let me check."
    assert message.tool_calls is not None and len(message.tool_calls) == 1
    tool_call: Any = message.tool_calls[0]
    assert tool_call.id.startswith("call_")
    assert tool_call.function.name == "weather"
    assert json.loads(tool_call.function.arguments) == {"city": "Paris"}
    assert final.choices[0].finish_reason == "tool_calls"
    tools = server.sent().prompt.removeprefix("<tools>").partition("</tools>")[0]
    function = json.loads(tools)["function"]  # as Go writes Ollama's Tool type
    assert function["name"] == "weather"
    assert function["parameters"]["properties"] == WEATHER["function"]["parameters"]["properties"]


def test_tool_round_trip_and_images_reach_the_runner(server: Server) -> None:
    server.create_vision("vision", TOOLS_TEMPLATE_TEXT)
    png = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(png, "PNG")
    data = base64.b64encode(png.getvalue()).decode()
    messages: Any = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}},
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
        model="vision",
        messages=messages,
        response_format={"type": "json_object"},
        temperature=0.2,
    )
    sent = server.sent()
    assert sent.prompt == (  # the two user messages collated, as Ollama's templates see them
        "<|im_start|>user\nWhat is this?\n\n[img-0]<|im_end|>\n"
        '<|im_start|>assistant\n<tool_call>{"name":"look","arguments":{}}</tool_call><|im_end|>\n'
        "<|im_start|>tool\na cat<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert sent.format == "json" and sent.options.temperature == 0.2
    assert sent.images == (data,)


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
    arguments: dict[str, Any] = {"model": MODEL, "messages": USER}
    if "messages" in extra:
        arguments["messages"] = extra.pop("messages")
    with pytest.raises(openai.BadRequestError) as caught:
        server.client().chat.completions.create(**arguments, extra_body=extra)
    body: Any = caught.value.body
    assert body["type"] == "invalid_request_error"
    assert server.script.started == 0 and server.script.requests == []


def test_tools_on_a_template_without_tools_is_bad_request(server: Server) -> None:
    with pytest.raises(openai.BadRequestError, match="does not support tools"):
        server.client().chat.completions.create(model=MODEL, messages=USER, tools=[WEATHER])
    assert server.script.started == 0


def test_error_mid_stream_reaches_the_client(server: Server) -> None:
    server.script.chunks = ["Hi", "!"]
    server.script.fail_after = 1
    stream = server.client().chat.completions.create(model=MODEL, messages=USER, stream=True)
    with pytest.raises(openai.APIError, match="runner crashed"):
        list(stream)
    assert [entry.idle for entry in server.scripted.live.scheduler.loaded()] == [True]


def test_error_before_the_first_chunk_keeps_its_status(server: Server) -> None:
    server.script.fail_after = 0
    with pytest.raises(openai.InternalServerError, match="runner crashed"):
        server.client().chat.completions.create(model=MODEL, messages=USER, stream=True)


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b""])
def test_malformed_bodies_are_openai_400s(server: Server, body: bytes) -> None:
    response = httpx.post(f"{server.url}/v1/chat/completions", content=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    assert set(error) == {"message", "type", "param", "code"}


def test_sse_wire_format(server: Server) -> None:
    server.script.chunks = ["Hi"]
    body = {"model": MODEL, "messages": USER, "stream": True}
    response = httpx.post(f"{server.url}/v1/chat/completions", json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    frames = response.text.split("\n\n")
    assert len(frames) == 4  # two chunks, [DONE], and the end
    assert frames[-2:] == ["data: [DONE]", ""]
    assert all(frame.startswith("data: {") for frame in frames[:-2])


# ----------------------------------------------------------------------------- completions

FIM = (
    'TEMPLATE """{{ if .Suffix }}<PRE> {{ .Prompt }} <SUF>{{ .Suffix }} <MID>'
    '{{ else }}{{ .Prompt }}{{ end }}"""\n'
)
"""A fill-in-the-middle template: a model that supports `suffix` (Ollama's insert)."""


def test_completion(server: Server) -> None:
    server.derive("fim", FIM)
    server.script.chunks = ["Once", " upon"]
    server.script.done_reason = "length"
    result = server.client().completions.create(
        model="fim", prompt="Tell me", max_tokens=4, suffix="END", echo=True
    )
    assert result.object == "text_completion" and result.id.startswith("cmpl-")
    assert result.choices[0].text == "Tell meOnce upon"
    assert result.choices[0].finish_reason == "length"
    sent = server.sent()
    assert (sent.prompt, sent.options.num_predict) == ("<PRE> Tell me <SUF>END <MID>", 4)
    assert result.usage is not None
    assert result.usage.total_tokens == prompt_tokens(sent.prompt) + 2


def test_completion_with_a_suffix_on_a_model_without_insert_is_bad_request(
    server: Server,
) -> None:
    with pytest.raises(openai.BadRequestError, match="does not support insert"):
        server.client().completions.create(model=MODEL, prompt="Tell me", suffix="END")
    assert server.script.started == 0


def test_completion_stream(server: Server) -> None:
    server.script.chunks = ["Once", " upon"]
    server.script.done_reason = "length"
    chunks = list(
        server.client().completions.create(
            model=MODEL,
            prompt="Tell me",
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "Once upon"
    assert chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    sent = server.sent()
    assert sent.prompt == "<|im_start|>user\nTell me<|im_end|>\n<|im_start|>assistant\n"
    assert sent.stream is True


def test_completion_with_an_unknown_model_is_not_found(server: Server) -> None:
    with pytest.raises(openai.NotFoundError):
        server.client().completions.create(model="missing", prompt="x")


# ----------------------------------------------------------------------------- models


def modified_times(server: Server) -> dict[str, int]:
    """Each model's `/api/tags` modification time, as a Unix timestamp."""
    tags = httpx.get(f"{server.url}/api/tags").json()["models"]
    return {t["name"]: int(datetime.fromisoformat(t["modified_at"]).timestamp()) for t in tags}


def test_list_models(server: Server) -> None:
    """Ollama's /v1/models is /api/tags reshaped: same models, same order."""
    server.derive("me/mine", "")
    models = list(server.client().models.list())
    modified = modified_times(server)
    assert [m.id for m in models] == list(modified)
    assert sorted((m.id, m.object, m.owned_by, m.created) for m in models) == [
        ("me/mine:latest", "model", "me", modified["me/mine:latest"]),
        (MODEL, "model", "library", modified[MODEL]),
    ]


@pytest.mark.parametrize(("name", "owner"), [("scripted", "library"), ("me/mine", "me")])
def test_retrieve_model(server: Server, name: str, owner: str) -> None:
    server.derive("me/mine", "")
    model = server.client().models.retrieve(name)
    created = modified_times(server)[f"{name}:latest"]
    assert (model.id, model.owned_by, model.created) == (name, owner, created)


@pytest.mark.parametrize("name", ["missing", "bad..name!"])
def test_retrieve_unknown_model_is_not_found(server: Server, name: str) -> None:
    with pytest.raises(openai.NotFoundError):
        server.client().models.retrieve(name)


# ----------------------------------------------------------------------------- embeddings


def unit(*row: float) -> list[float]:
    norm = math.sqrt(sum(x * x for x in row))
    return [x / norm for x in row]


def test_embeddings_with_the_sdk_default_base64(server: Server) -> None:
    """The scripted runner's raw vector of a text is [its length, 1, 2]; Ollama's
    /v1/embeddings returns them L2-normalised, as /api/embed does."""
    result = server.client().embeddings.create(model=MODEL, input=["a", "bb"])
    assert [d.embedding for d in result.data] == [
        pytest.approx(unit(1, 1, 2)),
        pytest.approx(unit(2, 1, 2)),
    ]
    assert [d.index for d in result.data] == [0, 1]
    tokens = len(word_tokens("a")) + len(word_tokens("bb"))
    assert result.usage.prompt_tokens == tokens and result.model == MODEL
    assert server.script.embedded == ["a", "bb"]


def test_embeddings_as_floats_with_dimensions(server: Server) -> None:
    body = {"model": MODEL, "input": "a", "encoding_format": "float", "dimensions": 2}
    response = httpx.post(f"{server.url}/v1/embeddings", json=body)
    assert response.json()["data"][0]["embedding"] == pytest.approx(unit(1, 1))


def test_embeddings_with_a_bad_format_is_bad_request(server: Server) -> None:
    with pytest.raises(openai.BadRequestError):
        server.client().embeddings.create(model=MODEL, input="a", encoding_format="hex")  # type: ignore[arg-type]
    assert server.script.started == 0 and server.script.embedded == []
