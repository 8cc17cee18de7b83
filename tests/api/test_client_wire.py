"""The client and the server share one set of wire models: every body the client sends is read
back by the server's own request parser into the very request the client was given.

Each sample request sets every field of its model, so a field added to a model in `api.types`
must be added here, and is then checked to travel client -> wire -> server under its JSON name.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.requests import Request

from ollamapy.api.client import Client, Stream
from ollamapy.api.types import (
    ChatRequest,
    CopyRequest,
    CreateRequest,
    DeleteRequest,
    EmbeddingsRequest,
    EmbedRequest,
    GenerateRequest,
    Message,
    PullRequest,
    PushRequest,
    ShowRequest,
    ToolCall,
    ToolCallFunction,
    WireModel,
)
from ollamapy.server.http import read_request

OPTIONS = {"temperature": 0.5, "stop": ["\n"]}
MESSAGE = Message(
    role="assistant",
    content="sure",
    images=["aGk="],
    tool_calls=[
        ToolCall(function=ToolCallFunction(name="f", arguments={"x": 1}, index=0), id="c1")
    ],
    tool_name="f",
    thinking="hmm",
)

SAMPLES: dict[type[WireModel], WireModel] = {
    GenerateRequest: GenerateRequest(
        model="m",
        prompt="hi",
        suffix="end",
        system="be brief",
        template="{{ .Prompt }}",
        context=[1, 2],
        stream=True,
        raw=True,
        format={"type": "object"},
        images=["aGk="],
        options=OPTIONS,
        keep_alive="5m",
        think="high",
        debug_render_only=True,
        truncate=False,
        shift=False,
        logprobs=True,
        top_logprobs=3,
    ),
    ChatRequest: ChatRequest(
        model="m",
        messages=[Message(role="user", content="hi"), MESSAGE],
        tools=[{"type": "function", "function": {"name": "f"}}],
        tool_choice={"type": "function", "function": {"name": "f"}},
        parallel_tool_calls=False,
        stream=True,
        format="json",
        options=OPTIONS,
        keep_alive=0,
        think=True,
        debug_render_only=True,
        truncate=True,
        shift=True,
        logprobs=True,
        top_logprobs=0,
    ),
    CreateRequest: CreateRequest(
        model="new",
        modelfile="FROM base",
        path="/tmp/Modelfile",
        from_="base",
        files={"w.gguf": "sha256:ab"},
        adapters={"a.gguf": "sha256:cd"},
        template="{{ .Prompt }}",
        system="be brief",
        license=["MIT"],
        parameters={"top_k": 1},
        messages=[MESSAGE],
        quantize="q4_K_M",
        quantization="Q8_0",
        renderer="r",
        parser="p",
        stream=True,
    ),
    ShowRequest: ShowRequest(
        model="m", system="be brief", template="{{ .Prompt }}", options=OPTIONS, verbose=True
    ),
    CopyRequest: CopyRequest(source="a", destination="b"),
    DeleteRequest: DeleteRequest(model="m"),
    EmbedRequest: EmbedRequest(
        model="m", input=["a", "b"], truncate=False, dimensions=8, options=OPTIONS, keep_alive=1.5
    ),
    EmbeddingsRequest: EmbeddingsRequest(model="m", prompt="a", options=OPTIONS, keep_alive="1m"),
    PullRequest: PullRequest(model="m", insecure=True, stream=True, username="u", password="p"),
}

Send = Callable[[Client, Any, bool], object]

# (route, the model the server reads it with, how the client sends a request of that model)
ROUTES: list[tuple[str, type[WireModel], Send]] = [
    ("/api/generate", GenerateRequest, lambda c, r, s: _drain(c.generate(r, stream=s))),
    ("/api/chat", ChatRequest, lambda c, r, s: _drain(c.chat(r, stream=s))),
    ("/api/create", CreateRequest, lambda c, r, s: _drain(c.create(r, stream=s))),
    ("/api/pull", PullRequest, lambda c, r, s: _drain(c.pull(r, stream=s))),
    ("/api/push", PushRequest, lambda c, r, s: _drain(c.push(r, stream=s))),
    ("/api/show", ShowRequest, lambda c, r, s: c.show(r)),
    ("/api/copy", CopyRequest, lambda c, r, s: c.copy(r)),
    ("/api/delete", DeleteRequest, lambda c, r, s: c.delete(r)),
    ("/api/embed", EmbedRequest, lambda c, r, s: c.embed(r)),
    ("/api/embeddings", EmbeddingsRequest, lambda c, r, s: c.embeddings(r)),
]
STREAMED = {GenerateRequest, ChatRequest, CreateRequest, PullRequest}


def _drain(result: object) -> object:
    """A `Stream` sends its request when read."""
    return list(result) if isinstance(result, Stream) else result


def sent(send: Send, request: WireModel, stream: bool) -> tuple[str, bytes]:
    """The path and the raw body the client puts on the wire for `request`."""
    requests: list[httpx.Request] = []

    def answer(http_request: httpx.Request) -> httpx.Response:
        http_request.read()
        requests.append(http_request)
        return httpx.Response(200, json={})

    with Client("127.0.0.1", transport=httpx.MockTransport(answer)) as client:
        send(client, request, stream)
    assert len(requests) == 1
    return requests[0].url.path, requests[0].content


def server_reads(route: str, model: type[WireModel], body: bytes) -> WireModel:
    """What the server's own request parser makes of `body` on `route`."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {"type": "http", "method": "POST", "path": route, "headers": []}
    return asyncio.run(read_request(Request(scope, receive), model))


def json_names(model: type[WireModel]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


@pytest.mark.parametrize("model", list(SAMPLES), ids=lambda m: m.__name__)
def test_each_sample_sets_every_field_of_its_model(model: type[WireModel]) -> None:
    assert SAMPLES[model].model_fields_set == set(model.model_fields), (
        f"set the new {model.__name__} fields in SAMPLES"
    )


CASES = [
    (route, model, send, stream)
    for route, model, send in ROUTES
    for stream in ((False, True) if model in STREAMED else (False,))
]


@pytest.mark.parametrize(
    ("route", "model", "send", "stream"),
    CASES,
    ids=[f"{route}{' streamed' if stream else ''}" for route, _, _, stream in CASES],
)
def test_the_server_reads_back_exactly_what_the_client_was_given(
    route: str, model: type[WireModel], send: Send, stream: bool
) -> None:
    request = SAMPLES[model]
    path, body = sent(send, request, stream)
    assert path == route
    assert set(json.loads(body)) == json_names(model), "every field, by its JSON name"
    expected = request.model_copy(update={"stream": stream}) if model in STREAMED else request
    assert server_reads(route, model, body) == expected


def test_the_stream_argument_overrides_the_models_default() -> None:
    request = GenerateRequest(model="m")  # the model's `stream` is True unless set
    _, body = sent(ROUTES[0][2], request, False)
    assert json.loads(body) == {"model": "m", "stream": False}
