"""A synchronous httpx client for Ollama's native API, the one the `ollama` CLI talks through.

Every route has a method; request bodies are the API's JSON fields (see the TypedDicts below)
and responses are decoded JSON dicts, so the client works unchanged against Ollama itself.
Failures surface as two exception types only, which the CLI prints without a traceback:

* `ResponseError(message, status_code)`: the server answered `{"error": "..."}`, either as an
  HTTP error status or as a line in the middle of an NDJSON stream;
* `ClientConnectionError`: nothing listens at `OLLAMA_HOST`.

Streaming methods return a `Stream`, an iterator that owns the HTTP response: use it in a
`with` block (or iterate it to the end) and the connection is released deterministically.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from types import TracebackType
from typing import Any, Literal, TypedDict, Unpack, overload

import httpx

from ollamapy import __version__
from ollamapy.config import HostAddress, parse_host
from ollamapy.errors import OllamaError

JSON = dict[str, Any]
Strings = list[str]

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


class GenerateFields(TypedDict, total=False):
    """Optional `/api/generate` fields, as the API documents them."""

    suffix: str
    system: str
    template: str
    context: list[int]
    raw: bool
    format: str | JSON
    images: list[str]
    options: JSON
    keep_alive: float | str
    think: bool | str


class ChatFields(TypedDict, total=False):
    """Optional `/api/chat` fields."""

    tools: list[JSON]
    format: str | JSON
    options: JSON
    keep_alive: float | str
    think: bool | str


class EmbedFields(TypedDict, total=False):
    """Optional `/api/embed` fields."""

    truncate: bool
    dimensions: int
    options: JSON
    keep_alive: float | str


class ShowFields(TypedDict, total=False):
    """Optional `/api/show` fields (the REPL's session overrides)."""

    system: str
    template: str
    options: JSON
    verbose: bool


class CreateFields(TypedDict, total=False):
    """Optional `/api/create` fields (today's form; `modelfile` is the legacy one)."""

    files: dict[str, str]
    adapters: dict[str, str]
    template: str
    system: str
    parameters: JSON
    messages: list[JSON]
    license: str | list[str]
    quantize: str
    modelfile: str


def default_host(env: Mapping[str, str] | None = None) -> HostAddress:
    """Where the CLI connects: `OLLAMA_HOST`, with a wildcard address mapped to loopback.

    Only `OLLAMA_HOST` is read, so a bad value in an unrelated server variable cannot stop
    the client from starting.
    """
    env = os.environ if env is None else env
    host = parse_host(env.get("OLLAMA_HOST"))
    return HostAddress(host.scheme, _CONNECTABLE.get(host.host, host.host), host.port)


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


def _drop_none(fields: Mapping[str, Any]) -> JSON:
    return {key: value for key, value in fields.items() if value is not None}


class Client:
    """One connection pool to one Ollama server. Use as a context manager, or call `close()`.

    `transport` replaces the network (tests pass an `httpx.MockTransport`).
    """

    def __init__(
        self,
        host: str | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> None:
        address = default_host() if host is None else default_host({"OLLAMA_HOST": host})
        self.base_url = address.url
        # Loading a model or pulling a layer can take minutes: only connecting is time-boxed.
        self._http = httpx.Client(
            base_url=self.base_url,
            transport=transport,
            timeout=timeout or httpx.Timeout(None, connect=30.0),
            headers={"User-Agent": user_agent(), "Accept": "application/json"},
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

    def _post(self, path: str, body: JSON, stream: bool) -> JSON | Stream:
        body = {**_drop_none(body), "stream": stream}
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

    def show(self, model: str, **fields: Unpack[ShowFields]) -> JSON:
        return self._json("POST", "/api/show", _drop_none({"model": model, **fields}))

    def copy(self, source: str, destination: str) -> None:
        self._request("POST", "/api/copy", body={"source": source, "destination": destination})

    def delete(self, model: str) -> None:
        self._request("DELETE", "/api/delete", body={"model": model})

    # -- inference --------------------------------------------------------------------------

    @overload
    def generate(
        self,
        model: str,
        prompt: str = "",
        *,
        stream: Literal[False] = False,
        **fields: Unpack[GenerateFields],
    ) -> JSON: ...
    @overload
    def generate(
        self,
        model: str,
        prompt: str = "",
        *,
        stream: Literal[True],
        **fields: Unpack[GenerateFields],
    ) -> Stream: ...
    def generate(
        self,
        model: str,
        prompt: str = "",
        *,
        stream: bool = False,
        **fields: Unpack[GenerateFields],
    ) -> JSON | Stream:
        """`POST /api/generate`. No prompt only loads (keep_alive 0: unloads) the model."""
        body: JSON = {"model": model, **fields}
        if prompt:
            body["prompt"] = prompt
        return self._post("/api/generate", body, stream)

    @overload
    def chat(
        self,
        model: str,
        messages: Iterable[JSON] = (),
        *,
        stream: Literal[False] = False,
        **fields: Unpack[ChatFields],
    ) -> JSON: ...
    @overload
    def chat(
        self,
        model: str,
        messages: Iterable[JSON] = (),
        *,
        stream: Literal[True],
        **fields: Unpack[ChatFields],
    ) -> Stream: ...
    def chat(
        self,
        model: str,
        messages: Iterable[JSON] = (),
        *,
        stream: bool = False,
        **fields: Unpack[ChatFields],
    ) -> JSON | Stream:
        """`POST /api/chat` with the whole conversation so far."""
        return self._post("/api/chat", {"model": model, "messages": [*messages], **fields}, stream)

    def embed(self, model: str, input: str | Strings, **fields: Unpack[EmbedFields]) -> JSON:
        """`POST /api/embed`: `{"embeddings": [[...], ...]}`."""
        body = _drop_none({"model": model, "input": input, **fields})
        return self._json("POST", "/api/embed", body)

    def embeddings(self, model: str, prompt: str, **fields: Unpack[EmbedFields]) -> JSON:
        """`POST /api/embeddings`, the legacy single-vector route."""
        body = _drop_none({"model": model, "prompt": prompt, **fields})
        return self._json("POST", "/api/embeddings", body)

    # -- model management (streams of progress) ----------------------------------------------

    @overload
    def create(
        self,
        model: str,
        *,
        from_: str | None = None,
        stream: Literal[False] = False,
        **fields: Unpack[CreateFields],
    ) -> JSON: ...
    @overload
    def create(
        self,
        model: str,
        *,
        from_: str | None = None,
        stream: Literal[True],
        **fields: Unpack[CreateFields],
    ) -> Stream: ...
    def create(
        self,
        model: str,
        *,
        from_: str | None = None,
        stream: bool = False,
        **fields: Unpack[CreateFields],
    ) -> JSON | Stream:
        """`POST /api/create`; `from_` is the API's `from` (a model name or blob digest)."""
        return self._post("/api/create", {"model": model, "from": from_, **fields}, stream)

    @overload
    def pull(
        self, model: str, *, insecure: bool = False, stream: Literal[False] = False
    ) -> JSON: ...
    @overload
    def pull(self, model: str, *, insecure: bool = False, stream: Literal[True]) -> Stream: ...
    def pull(self, model: str, *, insecure: bool = False, stream: bool = False) -> JSON | Stream:
        return self._post("/api/pull", {"model": model, "insecure": insecure or None}, stream)

    @overload
    def push(
        self, model: str, *, insecure: bool = False, stream: Literal[False] = False
    ) -> JSON: ...
    @overload
    def push(self, model: str, *, insecure: bool = False, stream: Literal[True]) -> Stream: ...
    def push(self, model: str, *, insecure: bool = False, stream: bool = False) -> JSON | Stream:
        return self._post("/api/push", {"model": model, "insecure": insecure or None}, stream)

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
