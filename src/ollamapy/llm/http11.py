"""A lean HTTP/1.1 client for all of the runner's exchanges: polls, small replies, streams.

`ProcessRunner` polls health and info, posts tokenize, detokenize and embedding requests
and reads `/completion` streams through this (the one client stack for runner traffic)
instead of httpx: httpx spends about 0.7 ms of Python on each request
(anyio streams, httpcore's pool, h11's state machine), and a one-sentence `/api/embed`
takes about 6 ms in all on two cores; on a stream it spends most of the server's CPU per
token (a profile of 8 streaming clients: about 80% of the per-token work was httpx reading
the runner's lines). It does only what those exchanges need: a GET, or a POST with a
Content-Length body, a reply with a Content-Length or chunked body, and keep-alive
connections reused one request at a time.

A kept connection the runner has since closed (uvicorn drops idle ones after 5 s) fails
before any byte of its reply arrives; the request is then sent again on a new connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

CONNECT_TIMEOUT_S = 10.0
MAX_IDLE = 16
"""Connections kept open for reuse; more may be open at once while requests overlap."""

_Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class HTTPError(Exception):
    """The exchange failed: no connection, a reset, or a reply that is not HTTP/1.1."""


class _Stale(Exception):
    """A reused connection ended before its reply began (safe to send again)."""


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes


class Connections:
    """Keep-alive HTTP/1.1 connections to one `host:port`; `aclose()` closes them all."""

    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()
        self._closed = False

    async def post(self, path: str, body: bytes, content_type: str = "application/json") -> Reply:
        """POST `body` to `path` and read the whole reply; `HTTPError` if that fails."""
        async with self.stream(path, body, content_type) as response:
            return Reply(response.status, await response.read())

    async def get(self, path: str) -> Reply:
        """GET `path` and read the whole reply (the health and info polls)."""
        async with self.stream(path, b"", method="GET") as response:
            return Reply(response.status, await response.read())

    @contextlib.asynccontextmanager
    async def stream(
        self,
        path: str,
        body: bytes,
        content_type: str = "application/json",
        *,
        method: str = "POST",
    ) -> AsyncIterator[Response]:
        """Send `body` to `path`; the reply, its body still to be read (`lines()` or
        `read()`). Leaving the block before the body's end closes the connection, which
        is how the runner learns that a stream's reader went away."""
        request = (
            f"{method} {path} HTTP/1.1\r\nhost: {self._host}:{self._port}\r\n"
            f"content-type: {content_type}\r\ncontent-length: {len(body)}\r\n\r\n"
        ).encode("latin-1") + body
        connection, status_line = await self._start(request)
        self._busy.add(connection)
        response: Response | None = None
        try:
            try:
                response = await Response.after(connection[0], status_line)
            except _READ_ERRORS as exc:
                raise HTTPError(f"bad reply from the runner: {exc or type(exc).__name__}") from exc
            yield response
        finally:
            self._release(connection, response is not None and response.reusable)

    @property
    def idle(self) -> int:
        """Connections kept for reuse now."""
        return len(self._idle)

    async def aclose(self) -> None:
        """Close every connection: idle ones, and those a reply is being read from (their
        readers fail at once, as when the runner is gone; no request outlives `aclose`)."""
        self._closed = True
        while self._idle:
            self._idle.pop()[1].close()
        for connection in list(self._busy):
            connection[1].close()

    async def _start(self, request: bytes) -> tuple[_Connection, bytes]:
        """Send `request` on an idle connection (the next one if it turns out stale) or
        a new one; the connection and the reply's status line."""
        while self._idle:
            connection = self._idle.pop()
            if connection[0].at_eof() or connection[1].is_closing():
                connection[1].close()
                continue
            try:
                return connection, await _send(connection, request, reused=True)
            except _Stale:
                connection[1].close()
            except BaseException:
                connection[1].close()
                raise
        connection = await self._open()
        try:
            return connection, await _send(connection, request, reused=False)
        except BaseException:
            connection[1].close()
            raise

    def _release(self, connection: _Connection, reusable: bool) -> None:
        """Keep a connection whose reply was read to its end; close any other (also on
        errors and cancellation: its state is unknown)."""
        self._busy.discard(connection)
        if reusable and not self._closed and len(self._idle) < MAX_IDLE:
            self._idle.append(connection)
        else:
            connection[1].close()

    async def _open(self) -> _Connection:
        try:
            return await asyncio.wait_for(
                asyncio.open_connection(self._host, self._port), CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError) as exc:
            raise HTTPError(f"cannot connect to the runner: {exc or type(exc).__name__}") from exc


_READ_ERRORS = (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError)


class Response:
    """A reply whose head has been read; its body is read once, as lines or whole."""

    def __init__(
        self, reader: asyncio.StreamReader, status: int, length: int | None, keep: bool
    ) -> None:
        self.status = status
        self._reader = reader
        self._length = length  # None: chunked
        self._keep = keep
        self._ended = False

    @classmethod
    async def after(cls, reader: asyncio.StreamReader, status_line: bytes) -> Response:
        """Read the head that follows `status_line`."""
        version, _, rest = status_line.partition(b" ")
        if not version.startswith(b"HTTP/1."):
            raise ValueError(f"bad status line {status_line[:80]!r}")
        status = int(rest[:3])
        length: int | None = None
        chunked = False
        keep = version == b"HTTP/1.1"
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection":
                keep = value.strip().lower() != b"close"
            elif name == b"transfer-encoding":
                chunked = value.strip().lower() == b"chunked"
                if not chunked:
                    raise ValueError(f"unsupported transfer-encoding {value.strip()[:40]!r}")
        if chunked == (length is not None):
            raise ValueError("a reply needs exactly one of Content-Length and chunked")
        return cls(reader, status, None if chunked else length, keep)

    @property
    def reusable(self) -> bool:
        """Whether the connection may carry another request: the body was read to its end."""
        return self._keep and self._ended

    async def read(self) -> bytes:
        """The whole body."""
        try:
            if self._length is not None:
                body = await self._reader.readexactly(self._length)
            else:
                body = b"".join([piece async for piece in self._chunks()])
        except _READ_ERRORS as exc:
            raise HTTPError(f"bad reply from the runner: {exc or type(exc).__name__}") from exc
        self._ended = True
        return body

    async def lines(self) -> AsyncIterator[bytes]:
        """The body's lines, without their line ends, as they arrive."""
        partial = b""
        if self._length is not None:
            *complete, partial = (await self.read()).split(b"\n")
            for line in complete:
                yield line
            if partial:
                yield partial
            return
        try:
            async for piece in self._chunks():
                *complete, partial = (partial + piece).split(b"\n")
                for line in complete:
                    yield line
        except _READ_ERRORS as exc:
            raise HTTPError(f"bad reply from the runner: {exc or type(exc).__name__}") from exc
        self._ended = True
        if partial:
            yield partial

    async def _chunks(self) -> AsyncIterator[bytes]:
        """The data of each chunk of a chunked body, up to the last (empty) one."""
        reader = self._reader
        while True:
            size_line = await reader.readline()
            if not size_line.endswith(b"\n"):
                raise asyncio.IncompleteReadError(size_line, None)
            size = int(size_line.split(b";", 1)[0], 16)
            if size == 0:
                while (trailer := await reader.readline()) not in (b"\r\n", b"\n"):
                    if not trailer:
                        raise asyncio.IncompleteReadError(b"", None)
                return
            data = await reader.readexactly(size + 2)  # the data, then CRLF
            yield data[:-2]


async def _send(connection: _Connection, request: bytes, *, reused: bool) -> bytes:
    """Send `request`; return the reply's status line. `_Stale` if a reused one ended."""
    reader, writer = connection
    try:
        writer.write(request)
        await writer.drain()
        status_line = await reader.readline()
    except ConnectionError as exc:
        if reused:
            raise _Stale() from exc
        raise HTTPError(str(exc) or type(exc).__name__) from exc
    if not status_line:
        if reused:
            raise _Stale()
        raise HTTPError("the runner closed the connection")
    return status_line
