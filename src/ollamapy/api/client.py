"""A synchronous httpx client for Ollama's native API, the one the `ollama` CLI talks through.

Every route has a method that takes the route's request model from `api.types`, the very model
the server validates that body with, so the two ends cannot disagree on a field; the body sent is
`request.to_body()` (the fields the caller set, by their JSON names). Responses are decoded JSON
dicts, so the client works unchanged against Ollama itself.
Failures surface as two exception types only, which the CLI prints without a traceback:

* `ResponseError(message, status_code)`: the server answered `{"error": "..."}`, either as an
  HTTP error status or as a line in the middle of an NDJSON stream;
* `ClientConnectionError`: nothing listens at `OLLAMA_HOST`.

`OLLAMA_API_KEY`, when set, is sent as `Authorization: Bearer <key>`. An `https://`
`OLLAMA_HOST` is verified against the system's trusted certificates plus `OLLAMA_TLS_CA`.

Streaming methods return a `Stream` when called with `stream=True` (that argument, not the
request's own `stream` field, decides, as it decides the return type): an iterator that owns the
HTTP response; use it in a `with` block (or iterate it to the end) and the connection is released
deterministically.
"""

from __future__ import annotations

import json
import os
import platform
import ssl
import sys
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from types import TracebackType
from typing import Any, Literal, TypeVar, overload

import httpx

from ollamapy import __version__
from ollamapy.api.types import (
    ChatRequest,
    CopyRequest,
    CreateRequest,
    DeleteRequest,
    EmbeddingsRequest,
    EmbedRequest,
    GenerateRequest,
    PullRequest,
    PushRequest,
    ShowRequest,
    WireModel,
)
from ollamapy.config import HostAddress, parse_host
from ollamapy.errors import OllamaError

JSON = dict[str, Any]
Named = TypeVar("Named", ShowRequest, DeleteRequest, PullRequest)

CONNECT_ERROR_MESSAGE = "could not connect to ollama app, is it running?"

# Wildcard listen addresses are not addresses one can connect to everywhere; Ollama's users set
# OLLAMA_HOST=0.0.0.0 for the server and expect the CLI on the same machine to keep working.
_CONNECTABLE = {"0.0.0.0": "127.0.0.1", "::": "::1"}

# Go's names for the architectures, so the user agent reads like Ollama's own.
_GO_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


class ClientError(OllamaError):
    """Anything that went wrong between the client and the server."""


class ResponseError(ClientError):
    """The server answered with an error: `{"error": message}` and an HTTP status.

    `status_code` is the HTTP status of the response; for an error line that arrives inside a
    stream that already started with 200, it is that 200.
    """

    def __init__(self, message: str, status_code: int = -1) -> None:
        super().__init__(message)
        self.status_code = status_code


class ClientConnectionError(ClientError, ConnectionError):
    """The server is not running (connection refused or the host is unreachable)."""

    def __init__(self, message: str = CONNECT_ERROR_MESSAGE) -> None:
        super().__init__(message)


def default_host(env: Mapping[str, str] | None = None) -> HostAddress:
    """Where the CLI connects: `OLLAMA_HOST`, with a wildcard address mapped to loopback.

    Only `OLLAMA_HOST` is read, so a bad value in an unrelated server variable cannot stop
    the client from starting.
    """
    env = os.environ if env is None else env
    host = parse_host(env.get("OLLAMA_HOST"))
    return HostAddress(host.scheme, _CONNECTABLE.get(host.host, host.host), host.port)


def auth_headers(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """`Authorization: Bearer $OLLAMA_API_KEY`, or nothing when it is unset."""
    env = os.environ if env is None else env
    key = env.get("OLLAMA_API_KEY", "").strip()
    return {"Authorization": f"Bearer {key}"} if key else {}


def tls_context(env: Mapping[str, str] | None = None) -> ssl.SSLContext:
    """The system's trusted certificates, plus `OLLAMA_TLS_CA` (a PEM file) when set.

    httpx would trust certifi's bundle only; a self-signed server certificate is trusted by
    naming it (or its CA) in `OLLAMA_TLS_CA`, a company CA by the system store.
    """
    env = os.environ if env is None else env
    context = ssl.create_default_context()
    ca = env.get("OLLAMA_TLS_CA", "").strip()
    if ca:
        try:
            context.load_verify_locations(cafile=os.path.expanduser(ca))
        except (OSError, ssl.SSLError) as exc:
            raise ClientError(f"OLLAMA_TLS_CA {ca!r}: {exc}") from None
    return context


def user_agent() -> str:
    """`ollama/<version> (<arch> <os>) Python/<version>`, shaped like Ollama's Go user agent."""
    machine = platform.machine().lower()
    arch = _GO_ARCH.get(machine, machine or "unknown")
    python = ".".join(str(part) for part in sys.version_info[:3])
    return f"ollama/{__version__} ({arch} {sys.platform}) Python/{python}"


class Stream(Iterator[JSON], AbstractContextManager["Stream"]):
    """The parts of one NDJSON response, decoded; closing it closes the HTTP response.

    The request is sent when iteration starts. A `{"error": ...}` line raises `ResponseError`.
    """

    def __init__(self, opener: Callable[[], AbstractContextManager[httpx.Response]]) -> None:
        self._parts = _ndjson_parts(opener)

    def __next__(self) -> JSON:
        return next(self._parts)

    def close(self) -> None:
        """Release the connection, even when the stream was not read to its end."""
        self._parts.close()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _ndjson_parts(
    opener: Callable[[], AbstractContextManager[httpx.Response]],
) -> Generator[JSON, None, None]:
    with _translated_errors(), opener() as response:
        if response.is_error:
            response.read()
            raise _response_error(response)
        for line in response.iter_lines():
            if not line.strip():
                continue
            part = _decode_line(line)
            if "error" in part:
                raise ResponseError(str(part["error"]), response.status_code)
            yield part


def _decode_line(line: str) -> JSON:
    try:
        part = json.loads(line)
    except json.JSONDecodeError:
        raise ClientError(f"invalid response from server: {line[:80]!r}") from None
    if not isinstance(part, dict):
        raise ClientError(f"invalid response from server: {line[:80]!r}")
    return part


@contextmanager
def _translated_errors() -> Iterator[None]:
    """Turn httpx's transport errors into the client's two public error types."""
    try:
        yield
    except httpx.ConnectError as exc:
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):  # a server is there, its cert is not trusted
            raise ClientError(
                f"TLS: {exc} (set OLLAMA_TLS_CA to the server's CA certificate)"
            ) from exc
        raise ClientConnectionError() from exc
    except httpx.TransportError as exc:
        raise ClientError(str(exc) or type(exc).__name__) from exc


def _response_error(response: httpx.Response) -> ResponseError:
    """Ollama's error body is `{"error": "..."}`; anything else is reported as it came."""
    text = response.text
    try:
        body = json.loads(text) if text else None
    except json.JSONDecodeError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        message = body["error"]
    else:
        message = text.strip() or f"{response.status_code} {response.reason_phrase}".strip()
    return ResponseError(message, response.status_code)


def _named(model: type[Named], request: Named | str) -> Named:
    """A bare model name stands for the request that carries only that name."""
    return model(model=request) if isinstance(request, str) else request


class Client:
    """One connection pool to one Ollama server. Use as a context manager, or call `close()`.

    `transport` replaces the network (tests pass an `httpx.MockTransport`); `api_key` defaults
    to `OLLAMA_API_KEY`.
    """

    def __init__(
        self,
        host: str | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: httpx.Timeout | None = None,
        api_key: str | None = None,
    ) -> None:
        address = default_host() if host is None else default_host({"OLLAMA_HOST": host})
        self.base_url = address.url
        headers = {"User-Agent": user_agent(), "Accept": "application/json"}
        headers |= auth_headers(None if api_key is None else {"OLLAMA_API_KEY": api_key})
        # Loading a model or pulling a layer can take minutes: only connecting is time-boxed.
        self._http = httpx.Client(
            base_url=self.base_url,
            transport=transport,
            timeout=timeout or httpx.Timeout(None, connect=30.0),
            headers=headers,
            verify=tls_context() if address.scheme == "https" else True,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------------

    def _request(
        self, method: str, path: str, *, body: JSON | None = None, content: Any = None
    ) -> httpx.Response:
        with _translated_errors():
            response = self._http.request(method, path, json=body, content=content)
        if response.is_error:
            raise _response_error(response)
        return response

    def _json(self, method: str, path: str, body: JSON | None = None) -> JSON:
        response = self._request(method, path, body=body)
        if not response.content:
            return {}
        decoded = response.json()
        if not isinstance(decoded, dict):
            raise ClientError(f"invalid response from server for {path}")
        return decoded

    def _stream(self, path: str, body: JSON) -> Stream:
        headers = {"Accept": "application/x-ndjson"}
        return Stream(lambda: self._http.stream("POST", path, json=body, headers=headers))

    def _post(self, path: str, request: WireModel, stream: bool) -> JSON | Stream:
        """Send a streamable request; the `stream` argument, which also decides what this
        returns, overrides the model's own `stream` (True by default, as on the wire)."""
        body = {**request.to_body(), "stream": stream}
        return self._stream(path, body) if stream else self._json("POST", path, body)

    # -- server -----------------------------------------------------------------------------

    def heartbeat(self) -> None:
        """`HEAD /`: raises `ClientConnectionError` when no server is running."""
        self._request("HEAD", "/")

    def version(self) -> str:
        return str(self._json("GET", "/api/version").get("version", ""))

    # -- models -----------------------------------------------------------------------------

    def list(self) -> JSON:
        """`GET /api/tags`: `{"models": [...]}`."""
        return self._json("GET", "/api/tags")

    tags = list

    def ps(self) -> JSON:
        """`GET /api/ps`: the loaded models."""
        return self._json("GET", "/api/ps")

    def show(self, request: ShowRequest | str) -> JSON:
        """`POST /api/show`; a bare name is `ShowRequest(model=name)`."""
        return self._json("POST", "/api/show", _named(ShowRequest, request).to_body())

    def copy(self, request: CopyRequest) -> None:
        self._request("POST", "/api/copy", body=request.to_body())

    def delete(self, request: DeleteRequest | str) -> None:
        self._request("DELETE", "/api/delete", body=_named(DeleteRequest, request).to_body())

    # -- inference --------------------------------------------------------------------------

    @overload
    def generate(self, request: GenerateRequest, *, stream: Literal[False] = False) -> JSON: ...
    @overload
    def generate(self, request: GenerateRequest, *, stream: Literal[True]) -> Stream: ...
    @overload
    def generate(self, request: GenerateRequest, *, stream: bool) -> JSON | Stream: ...
    def generate(self, request: GenerateRequest, *, stream: bool = False) -> JSON | Stream:
        """`POST /api/generate`. No prompt only loads (keep_alive 0: unloads) the model."""
        return self._post("/api/generate", request, stream)

    @overload
    def chat(self, request: ChatRequest, *, stream: Literal[False] = False) -> JSON: ...
    @overload
    def chat(self, request: ChatRequest, *, stream: Literal[True]) -> Stream: ...
    @overload
    def chat(self, request: ChatRequest, *, stream: bool) -> JSON | Stream: ...
    def chat(self, request: ChatRequest, *, stream: bool = False) -> JSON | Stream:
        """`POST /api/chat` with the whole conversation so far."""
        return self._post("/api/chat", request, stream)

    def embed(self, request: EmbedRequest) -> JSON:
        """`POST /api/embed`: `{"embeddings": [[...], ...]}`."""
        return self._json("POST", "/api/embed", request.to_body())

    def embeddings(self, request: EmbeddingsRequest) -> JSON:
        """`POST /api/embeddings`, the legacy single-vector route."""
        return self._json("POST", "/api/embeddings", request.to_body())

    # -- model management (streams of progress) ----------------------------------------------

    @overload
    def create(self, request: CreateRequest, *, stream: Literal[False] = False) -> JSON: ...
    @overload
    def create(self, request: CreateRequest, *, stream: Literal[True]) -> Stream: ...
    @overload
    def create(self, request: CreateRequest, *, stream: bool) -> JSON | Stream: ...
    def create(self, request: CreateRequest, *, stream: bool = False) -> JSON | Stream:
        """`POST /api/create`; the model's `from_` is sent as the API's `from`."""
        return self._post("/api/create", request, stream)

    @overload
    def pull(self, request: PullRequest | str, *, stream: Literal[False] = False) -> JSON: ...
    @overload
    def pull(self, request: PullRequest | str, *, stream: Literal[True]) -> Stream: ...
    @overload
    def pull(self, request: PullRequest | str, *, stream: bool) -> JSON | Stream: ...
    def pull(self, request: PullRequest | str, *, stream: bool = False) -> JSON | Stream:
        """`POST /api/pull`; a bare name is `PullRequest(model=name)`."""
        return self._post("/api/pull", _named(PullRequest, request), stream)

    @overload
    def push(self, request: PushRequest | str, *, stream: Literal[False] = False) -> JSON: ...
    @overload
    def push(self, request: PushRequest | str, *, stream: Literal[True]) -> Stream: ...
    @overload
    def push(self, request: PushRequest | str, *, stream: bool) -> JSON | Stream: ...
    def push(self, request: PushRequest | str, *, stream: bool = False) -> JSON | Stream:
        """`POST /api/push`; a bare name is `PushRequest(model=name)`."""
        return self._post("/api/push", _named(PushRequest, request), stream)

    # -- blobs ------------------------------------------------------------------------------

    def blob_exists(self, digest: str) -> bool:
        """`HEAD /api/blobs/<digest>`: whether the server already has the blob."""
        try:
            self._request("HEAD", f"/api/blobs/{digest}")
        except ResponseError as exc:
            if exc.status_code == 404:
                return False
            raise
        return True

    def create_blob(self, digest: str, data: bytes | Iterable[bytes]) -> None:
        """`POST /api/blobs/<digest>`: upload a file's bytes; the server checks the digest."""
        self._request("POST", f"/api/blobs/{digest}", content=data)
