"""The HTTP client against an `httpx.MockTransport`: requests sent, responses decoded, errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from ollamapy.api.client import (
    CONNECT_ERROR_MESSAGE,
    Client,
    ClientConnectionError,
    ClientError,
    ResponseError,
    default_host,
    user_agent,
)
from ollamapy.api.types import (
    ChatRequest,
    CopyRequest,
    CreateRequest,
    EmbeddingsRequest,
    EmbedRequest,
    GenerateRequest,
    Message,
    PushRequest,
    ShowRequest,
)

Call = Callable[[Client], Any]


class Recorder:
    """A fake server: records every request and answers with a canned response."""

    def __init__(self, response: httpx.Response | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.response = response or httpx.Response(200, json={})

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return self.response

    def client(self) -> Client:
        return Client("127.0.0.1:11434", transport=httpx.MockTransport(self))

    @property
    def body(self) -> Any:
        content = self.requests[-1].content
        return json.loads(content) if content else None


HI = GenerateRequest(model="m", prompt="hi")


def ndjson(*parts: dict[str, Any], status: int = 200) -> httpx.Response:
    text = "".join(json.dumps(part) + "\n" for part in parts)
    return httpx.Response(status, content=text.encode())


REQUESTS: list[tuple[str, Call, str, str, Any]] = [
    ("heartbeat", lambda c: c.heartbeat(), "HEAD", "/", None),
    ("version", lambda c: c.version(), "GET", "/api/version", None),
    ("list", lambda c: c.list(), "GET", "/api/tags", None),
    ("ps", lambda c: c.ps(), "GET", "/api/ps", None),
    (
        "show",
        lambda c: c.show(ShowRequest(model="m", verbose=True)),
        "POST",
        "/api/show",
        {"model": "m", "verbose": True},
    ),
    ("show by name", lambda c: c.show("m"), "POST", "/api/show", {"model": "m"}),
    (
        "copy",
        lambda c: c.copy(CopyRequest(source="a", destination="b")),
        "POST",
        "/api/copy",
        {"source": "a", "destination": "b"},
    ),
    ("delete", lambda c: c.delete("m"), "DELETE", "/api/delete", {"model": "m"}),
    (
        "generate",
        lambda c: c.generate(
            GenerateRequest(model="m", prompt="hi", options={"seed": 1}, keep_alive="5m")
        ),
        "POST",
        "/api/generate",
        {"model": "m", "prompt": "hi", "options": {"seed": 1}, "keep_alive": "5m", "stream": False},
    ),
    (
        "generate load only",
        lambda c: c.generate(GenerateRequest(model="m", keep_alive=0)),
        "POST",
        "/api/generate",
        {"model": "m", "keep_alive": 0, "stream": False},
    ),
    (
        "generate debug render by its JSON name",
        lambda c: c.generate(GenerateRequest(model="m", debug_render_only=True)),
        "POST",
        "/api/generate",
        {"model": "m", "_debug_render_only": True, "stream": False},
    ),
    (
        "chat",
        lambda c: c.chat(
            ChatRequest(model="m", messages=[Message(role="user", content="hi")], format="json")
        ),
        "POST",
        "/api/chat",
        {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "format": "json",
            "stream": False,
        },
    ),
    (
        "embed",
        lambda c: c.embed(EmbedRequest(model="m", input=["a", "b"], truncate=False)),
        "POST",
        "/api/embed",
        {"model": "m", "input": ["a", "b"], "truncate": False},
    ),
    (
        "embeddings",
        lambda c: c.embeddings(EmbeddingsRequest(model="m", prompt="a")),
        "POST",
        "/api/embeddings",
        {"model": "m", "prompt": "a"},
    ),
    (
        "create",
        lambda c: c.create(
            CreateRequest(model="new", from_="base", system="be brief", parameters={"top_k": 1})
        ),
        "POST",
        "/api/create",
        {
            "model": "new",
            "from": "base",
            "system": "be brief",
            "parameters": {"top_k": 1},
            "stream": False,
        },
    ),
    ("pull", lambda c: c.pull("m"), "POST", "/api/pull", {"model": "m", "stream": False}),
    (
        "push insecure",
        lambda c: c.push(PushRequest(model="m", insecure=True)),
        "POST",
        "/api/push",
        {"model": "m", "insecure": True, "stream": False},
    ),
    ("blob exists", lambda c: c.blob_exists("sha256:ab"), "HEAD", "/api/blobs/sha256:ab", None),
]


@pytest.mark.parametrize(
    ("name", "call", "method", "path", "body"), REQUESTS, ids=[r[0] for r in REQUESTS]
)
def test_each_method_sends_its_request(
    name: str, call: Call, method: str, path: str, body: Any
) -> None:
    recorder = Recorder()
    with recorder.client() as client:
        call(client)
    request = recorder.requests[-1]
    assert (request.method, request.url.path) == (method, path)
    assert recorder.body == body
    assert request.headers["user-agent"] == user_agent()


def test_user_agent_names_version_platform_and_python() -> None:
    agent = user_agent()
    assert agent.startswith("ollama/0.1.0 (")
    assert ") Python/3." in agent


def test_create_blob_uploads_bytes() -> None:
    recorder = Recorder(httpx.Response(201))
    with recorder.client() as client:
        client.create_blob("sha256:ab", iter([b"ab", b"cd"]))
    assert recorder.requests[-1].content == b"abcd"
    assert recorder.requests[-1].url.path == "/api/blobs/sha256:ab"


def test_blob_exists_is_false_on_404() -> None:
    with Recorder(httpx.Response(404)).client() as client:
        assert client.blob_exists("sha256:ab") is False


@pytest.mark.parametrize(
    ("env", "url"),
    [
        ({}, "http://127.0.0.1:11434"),
        ({"OLLAMA_HOST": "0.0.0.0"}, "http://127.0.0.1:11434"),
        ({"OLLAMA_HOST": "0.0.0.0:8080"}, "http://127.0.0.1:8080"),
        ({"OLLAMA_HOST": "https://example.com"}, "https://example.com:443"),
        ({"OLLAMA_HOST": "[::]:5000"}, "http://[::1]:5000"),
    ],
)
def test_host_from_environment(env: dict[str, str], url: str) -> None:
    assert default_host(env).url == url


def test_client_reads_ollama_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "0.0.0.0:1234")
    with Client() as client:
        assert client.base_url == "http://127.0.0.1:1234"


def test_decodes_responses() -> None:
    recorder = Recorder(httpx.Response(200, json={"version": "0.9.1"}))
    with recorder.client() as client:
        assert client.version() == "0.9.1"
    recorder.response = httpx.Response(200, json={"models": [{"name": "a"}]})
    with recorder.client() as client:
        assert client.list() == {"models": [{"name": "a"}]}


def test_streaming_yields_each_line_and_sends_stream_true() -> None:
    recorder = Recorder(ndjson({"response": "a"}, {"response": "b"}, {"done": True}))
    with recorder.client() as client, client.generate(HI, stream=True) as stream:
        parts = list(stream)
    assert [p.get("response") for p in parts] == ["a", "b", None]
    assert recorder.body["stream"] is True


@pytest.mark.parametrize(
    ("response", "message", "status"),
    [
        (httpx.Response(404, json={"error": "model 'x' not found"}), "model 'x' not found", 404),
        (httpx.Response(400, json={"error": "bad"}), "bad", 400),
        (httpx.Response(500, text="plain failure"), "plain failure", 500),
        (httpx.Response(503), "503 Service Unavailable", 503),
    ],
)
def test_error_bodies_become_response_errors(
    response: httpx.Response, message: str, status: int
) -> None:
    with Recorder(response).client() as client, pytest.raises(ResponseError) as info:
        client.show("x")
    assert (info.value.message, info.value.status_code) == (message, status)
    assert str(info.value) == message


def test_error_status_on_a_stream_raises_on_first_read() -> None:
    recorder = Recorder(httpx.Response(404, json={"error": "model 'x' not found"}))
    with (
        recorder.client() as client,
        client.chat(ChatRequest(model="x"), stream=True) as stream,
        pytest.raises(ResponseError) as info,
    ):
        next(stream)
    assert info.value.status_code == 404


def test_error_line_mid_stream_raises_after_earlier_parts() -> None:
    recorder = Recorder(ndjson({"response": "a"}, {"error": "runner crashed"}))
    seen = []
    with (
        recorder.client() as client,
        client.generate(HI, stream=True) as stream,
        pytest.raises(ResponseError, match="runner crashed"),
    ):
        for part in stream:
            seen.append(part)
    assert seen == [{"response": "a"}]


def test_stream_closed_early_releases_the_response() -> None:
    closed = []

    class Body(httpx.SyncByteStream):
        def __iter__(self):  # type: ignore[no-untyped-def]
            yield b'{"response": "a"}\n'
            yield b'{"response": "b"}\n'

        def close(self) -> None:
            closed.append(True)

    transport = httpx.MockTransport(lambda request: httpx.Response(200, stream=Body()))
    with Client("127.0.0.1", transport=transport) as client:
        with client.generate(HI, stream=True) as stream:
            assert next(stream) == {"response": "a"}
        assert closed == [True]


def test_invalid_json_line_is_a_client_error() -> None:
    response = httpx.Response(200, content=b"not json\n")
    with Recorder(response).client() as client, pytest.raises(ClientError):
        list(client.pull("m", stream=True))


def refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("[Errno 111] Connection refused", request=request)


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.heartbeat(),
        lambda c: c.list(),
        lambda c: list(c.chat(ChatRequest(model="m"), stream=True)),
    ],
)
def test_connection_refused_is_a_friendly_connection_error(call: Call) -> None:
    with (
        Client("127.0.0.1:1", transport=httpx.MockTransport(refuse)) as client,
        pytest.raises(ClientConnectionError) as info,
    ):
        call(client)
    assert str(info.value) == CONNECT_ERROR_MESSAGE
    assert isinstance(info.value, ConnectionError)


def test_connection_refused_for_real(unused_port: int) -> None:
    with Client(f"127.0.0.1:{unused_port}") as client, pytest.raises(ClientConnectionError):
        client.heartbeat()


@pytest.fixture
def unused_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
