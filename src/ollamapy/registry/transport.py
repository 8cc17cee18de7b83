"""A lean HTTP/1.1 transport for blob downloads: the body goes from the socket into the
caller's buffer, with no copies or event-loop round trips in between.

httpx's default stack hands a body over as 64 KiB `bytes`, each copied on its way
through anyio, h11 and httpcore and each an event-loop round trip (anyio even pauses and
resumes the socket per read). On the 2-core reference machine that path alone tops out
near 600 MB/s and costs about 0.3 s of CPU per 256 MiB, twice the sha256 of the same
bytes, so a pull could never come near the speed of its own verification.

`BlobTransport` serves body-less GET and HEAD requests itself: h11 writes the request
and parses (and checks) the response head; a body of known length is then read by
`BodyReader.readinto` through an asyncio `BufferedProtocol`, which `recv_into`s (with
TLS: decrypts into) the caller's buffer. `body_reader(response)` finds that reader;
the response still streams with `aiter_raw`, for callers that do not look for it.
Chunked or unframed bodies (error pages, mostly) are read through h11.

Each request has its own connection, closed with the response: blob parts are tens of
megabytes, so one handshake per part is noise, and nothing is shared between the parts
that download at once. Any other request goes to a standard httpx transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import h11
import httpx

READER_EXTENSION = "ollamapy.body_reader"
_RECEIVE_SIZE = 64 * 1024
"""Bytes per read while the head (or an h11-framed body) is parsed."""
_COPY_SIZE = 256 * 1024
"""Bytes per chunk when a raw-read body is consumed through `aiter_raw`."""
_STREAM_PATIENCE = 0.1
"""Seconds `aiter_raw` waits to fill a chunk before it yields what it has."""
_MAX_HEAD = 100 * 1024
"""Largest response head accepted, as in httpcore."""
_HAPPY_EYEBALLS_DELAY = 0.25


def body_reader(response: httpx.Response) -> BodyReader | None:
    """The response's direct body reader, when `BlobTransport` made it (and not yet used)."""
    reader = response.extensions.get(READER_EXTENSION)
    return reader if isinstance(reader, BodyReader) and not response.is_stream_consumed else None


class BlobTransport(httpx.AsyncBaseTransport):
    """See the module notes. `fallback` makes the standard transport for other requests
    (built on first use, as it loads a certificate store)."""

    def __init__(
        self,
        fallback: Callable[[], httpx.AsyncBaseTransport] = httpx.AsyncHTTPTransport,
        *,
        verify: bool = True,
    ) -> None:
        self._make_fallback = fallback
        self._verify = verify
        self._fallback: httpx.AsyncBaseTransport | None = None
        self._ssl_context: ssl.SSLContext | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not _served_here(request):
            if self._fallback is None:
                self._fallback = self._make_fallback()
            return await self._fallback.handle_async_request(request)
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        connection = await _open(request.url, timeouts.get("connect"), self._context)
        try:
            with _h11_errors():
                return await connection.exchange(request, timeouts.get("read"))
        except BaseException:
            connection.close()
            raise

    async def aclose(self) -> None:
        if self._fallback is not None:
            await self._fallback.aclose()

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:  # the same verification httpx does
            self._ssl_context = httpx.create_ssl_context(verify=self._verify)
        return self._ssl_context


def _served_here(request: httpx.Request) -> bool:
    """Body-less GET and HEAD over http(s); anything else goes to the fallback."""
    has_body = "content-length" in request.headers or "transfer-encoding" in request.headers
    scheme_ok = request.url.scheme in ("http", "https")
    return scheme_ok and not has_body and request.method in ("GET", "HEAD")


class BodyReader:
    """Reads a response body of known length straight into the caller's buffers."""

    def __init__(self, receiver: _Receiver, length: int, timeout: float | None) -> None:
        self._receiver = receiver
        self.remaining = length
        self._timeout = timeout

    async def readinto(self, buffer: memoryview, patience: float | None = None) -> int:
        """Fill `buffer` (or as much as the body has left); 0 once the body is complete.

        It returns early with what has arrived once `patience` seconds have passed (so
        a slow link still shows progress), or when the connection ends, errs or stalls
        for the read timeout; the next call then raises (`httpx.RemoteProtocolError`,
        `ReadError` or `ReadTimeout`), so the caller keeps every byte it was sent.
        """
        want = min(len(buffer), self.remaining)
        if want <= 0:
            return 0
        count = await self._receiver.receive(buffer[:want], want, self._timeout, patience)
        if count == 0:
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body "
                f"({self.remaining} bytes missing)"
            )
        self.remaining -= count
        return count


class _Receiver(asyncio.BufferedProtocol):
    """Receives into the buffer `receive` was given; reading is paused while there is none."""

    def __init__(self) -> None:
        self.transport: asyncio.BaseTransport | None = None
        self._target = memoryview(b"")
        self._filled = 0
        self._want = 0
        self._backlog = bytearray()
        """Bytes that arrived with no target (or were left over from parsing the head)."""
        self._spare = bytearray(_RECEIVE_SIZE)
        self._waiter: asyncio.Future[None] | None = None
        self._eager = False
        """Wake on any data, not only a full target (`patience` ran out)."""
        self._eof = False
        self._error: Exception | None = None

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        _pause(transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._filled < len(self._target):
            return self._target[self._filled :]
        return memoryview(self._spare)

    def buffer_updated(self, nbytes: int) -> None:
        if self._filled < len(self._target):
            self._filled += nbytes
            if self._filled >= self._want or self._eager:
                self._wake()
        else:
            self._backlog += self._spare[:nbytes]

    def eof_received(self) -> bool | None:
        self._eof = True
        self._wake()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._error = self._error or exc
        self._wake()

    # for the transport

    def push_back(self, data: bytes) -> None:
        """Bytes already read (past the response head) that belong to the body."""
        self._backlog[:0] = data

    async def receive(
        self,
        target: memoryview,
        want: int,
        timeout: float | None,
        patience: float | None = None,
    ) -> int:
        """Read into `target` until `want` bytes have come, or fewer once `patience` has
        passed, at EOF, or after `timeout` without data. Returns 0 at a clean EOF;
        raises `ReadError`/`ReadTimeout` when nothing came."""
        filled = self._take_backlog(target)
        if filled >= want or self._eof or self.transport is None:
            return filled or self._nothing_more()
        loop = asyncio.get_running_loop()
        self._target, self._filled, self._want = target, filled, want
        self._waiter = loop.create_future()
        impatience = None if patience is None else loop.call_later(patience, self._lose_patience)
        timed_out = False
        try:
            _resume(self.transport)
            async with asyncio.timeout(timeout):
                await self._waiter
        except TimeoutError:
            timed_out = True
        finally:
            filled = self._filled
            self._target, self._filled, self._want, self._waiter = memoryview(b""), 0, 0, None
            self._eager = False
            if impatience is not None:
                impatience.cancel()
            _pause(self.transport)
        if filled or not timed_out:
            return filled or self._nothing_more()
        raise httpx.ReadTimeout(f"no data for {timeout} s")

    def _lose_patience(self) -> None:
        self._eager = True
        if self._filled:
            self._wake()

    def _take_backlog(self, target: memoryview) -> int:
        count = min(len(self._backlog), len(target))
        if count:
            target[:count] = self._backlog[:count]
            del self._backlog[:count]
        return count

    def _nothing_more(self) -> int:
        if self._error is not None:
            reason = str(self._error) or type(self._error).__name__
            raise httpx.ReadError(reason) from self._error  # the cause names the failure
        return 0

    def _wake(self) -> None:
        if self.transport is not None:
            _pause(self.transport)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class _Connection:
    """One request and its response on a fresh connection."""

    def __init__(self, transport: asyncio.Transport, receiver: _Receiver) -> None:
        self._transport = transport
        self._receiver = receiver
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEAD)

    def close(self) -> None:
        self._transport.abort()  # no reuse, and no TLS goodbye to wait for

    async def exchange(self, request: httpx.Request, timeout: float | None) -> httpx.Response:
        self._transport.write(self._request_bytes(request))
        head = await self._read_head(timeout)
        length = _raw_length(head, request.method)
        reader = None
        if length is not None:
            self._receiver.push_back(self._h11.trailing_data[0])
            reader = BodyReader(self._receiver, length, timeout)
        extensions: dict[str, Any] = {
            "http_version": b"HTTP/" + head.http_version,
            "reason_phrase": head.reason,
            READER_EXTENSION: reader,
        }
        return httpx.Response(
            status_code=head.status_code,
            headers=list(head.headers.raw_items()),
            stream=_BodyStream(self, reader, timeout),
            extensions=extensions,
        )

    def _request_bytes(self, request: httpx.Request) -> bytes:
        headers = [(k, v) for k, v in request.headers.raw if k.lower() != b"connection"]
        headers.append((b"Connection", b"close"))
        head = h11.Request(method=request.method, target=request.url.raw_path, headers=headers)
        return self._h11.send(head) + (self._h11.send(h11.EndOfMessage()) or b"")

    async def _read_head(self, timeout: float | None) -> h11.Response:
        while True:
            event = await self._next_event(timeout)
            if isinstance(event, h11.Response):
                return event
            if not isinstance(event, h11.InformationalResponse):
                raise httpx.RemoteProtocolError("server disconnected without sending a response")

    async def _next_event(self, timeout: float | None) -> Any:
        scratch = memoryview(bytearray(_RECEIVE_SIZE))
        while (event := self._h11.next_event()) is h11.NEED_DATA:
            count = await self._receiver.receive(scratch, 1, timeout)
            self._h11.receive_data(bytes(scratch[:count]))  # b"" says the peer closed
        return event

    async def h11_body(self, timeout: float | None) -> AsyncIterator[bytes]:
        """A body whose framing h11 handles (chunked, until close, or none)."""
        while True:
            with _h11_errors():
                event = await self._next_event(timeout)
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                return


class _BodyStream(httpx.AsyncByteStream):
    def __init__(
        self, connection: _Connection, reader: BodyReader | None, timeout: float | None
    ) -> None:
        self._connection = connection
        self._reader = reader
        self._timeout = timeout

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._reader is None:
            async for data in self._connection.h11_body(self._timeout):
                yield data
            return
        buffer = memoryview(bytearray(min(_COPY_SIZE, max(1, self._reader.remaining))))
        while count := await self._reader.readinto(buffer, _STREAM_PATIENCE):
            yield bytes(buffer[:count])

    async def aclose(self) -> None:
        self._connection.close()


async def _open(
    url: httpx.URL, timeout: float | None, context: Callable[[], ssl.SSLContext]
) -> _Connection:
    loop = asyncio.get_running_loop()
    tls = url.scheme == "https"
    host = url.host
    port = url.port or (443 if tls else 80)
    try:
        async with asyncio.timeout(timeout):
            transport, receiver = await loop.create_connection(
                _Receiver,
                host,
                port,
                ssl=context() if tls else None,
                server_hostname=host if tls else None,
                happy_eyeballs_delay=_HAPPY_EYEBALLS_DELAY,
            )
    except TimeoutError:
        raise httpx.ConnectTimeout(f"connecting to {host}:{port} took over {timeout} s") from None
    except OSError as exc:  # refused, unreachable, unresolvable, TLS failures
        raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
    return _Connection(transport, receiver)


def _raw_length(head: h11.Response, method: str) -> int | None:
    """The body length, when it can be read raw: known, and not chunked (h11 checked
    that a Content-Length is a single well-formed number)."""
    if method == "HEAD" or head.status_code in (204, 304):
        return None
    lengths = [value for name, value in head.headers if name == b"content-length"]
    if not lengths or any(name == b"transfer-encoding" for name, _ in head.headers):
        return None
    return int(lengths[0])


@contextlib.contextmanager
def _h11_errors() -> Iterator[None]:
    try:
        yield
    except h11.RemoteProtocolError as exc:
        raise httpx.RemoteProtocolError(str(exc)) from exc
    except h11.LocalProtocolError as exc:
        raise httpx.LocalProtocolError(str(exc)) from exc


def _pause(transport: asyncio.BaseTransport) -> None:
    if isinstance(transport, asyncio.ReadTransport) and not transport.is_closing():
        transport.pause_reading()


def _resume(transport: asyncio.BaseTransport) -> None:
    if isinstance(transport, asyncio.ReadTransport) and not transport.is_closing():
        transport.resume_reading()
