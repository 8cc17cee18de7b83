"""A lean HTTP/1.1 client for the runner's small request/reply exchanges.

`ProcessRunner` posts tokenize, detokenize and embedding requests through this instead of
httpx: httpx spends about 0.7 ms of Python on each request (anyio streams, httpcore's
pool, h11's state machine), and a one-sentence `/api/embed` takes about 6 ms in all on two
cores. It does only what those exchanges need: a POST with a Content-Length body, a reply
with a Content-Length body, and keep-alive connections reused one request at a time.
Streams (`/completion`) stay on httpx.

A kept connection the runner has since closed (uvicorn drops idle ones after 5 s) fails
before any byte of its reply arrives; the request is then sent again on a new connection.
"""

from __future__ import annotations

import asyncio
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
    """Keep-alive HTTP/1.1 connections to one `host:port`; `aclose()` closes the idle ones."""

    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self._idle: list[_Connection] = []
        self._closed = False

    async def post(self, path: str, body: bytes, content_type: str = "application/json") -> Reply:
        """POST `body` to `path` and read the whole reply; `HTTPError` if that fails."""
        request = (
            f"POST {path} HTTP/1.1\r\nhost: {self._host}:{self._port}\r\n"
            f"content-type: {content_type}\r\ncontent-length: {len(body)}\r\n\r\n"
        ).encode("latin-1") + body
        while self._idle:
            connection = self._idle.pop()
            if connection[0].at_eof() or connection[1].is_closing():
                connection[1].close()
                continue
            try:
                return await self._exchange(connection, request, reused=True)
            except _Stale:
                continue
        return await self._exchange(await self._open(), request, reused=False)

    async def aclose(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop()[1].close()

    async def _open(self) -> _Connection:
        try:
            return await asyncio.wait_for(
                asyncio.open_connection(self._host, self._port), CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError) as exc:
            raise HTTPError(f"cannot connect to the runner: {exc or type(exc).__name__}") from exc

    async def _exchange(self, connection: _Connection, request: bytes, *, reused: bool) -> Reply:
        reader, writer = connection
        keep = False
        try:
            status_line = await _send(connection, request, reused=reused)
            reply, keep = await _read_reply(reader, status_line)
            return reply
        except (ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
            raise HTTPError(f"bad reply from the runner: {exc or type(exc).__name__}") from exc
        finally:
            if keep and not self._closed and len(self._idle) < MAX_IDLE:
                self._idle.append(connection)
            else:  # also on errors and cancellation: the connection's state is unknown
                writer.close()


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


async def _read_reply(reader: asyncio.StreamReader, status_line: bytes) -> tuple[Reply, bool]:
    """The reply after its status line, and whether the connection may be reused."""
    version, _, rest = status_line.partition(b" ")
    if not version.startswith(b"HTTP/1."):
        raise ValueError(f"bad status line {status_line[:80]!r}")
    status = int(rest[:3])
    length: int | None = None
    keep = version == b"HTTP/1.1"
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection":
            keep = value.strip().lower() != b"close"
        elif name == b"transfer-encoding":
            raise ValueError("chunked replies are not supported")
    if length is None:
        raise ValueError("reply without Content-Length")
    return Reply(status, await reader.readexactly(length)), keep
