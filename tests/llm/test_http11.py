"""The lean HTTP/1.1 client against a scripted asyncio server: reuse, stale connections,
errors and cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from ollamapy.llm.http11 import Connections, HTTPError, Reply, Response

Reader = asyncio.StreamReader
Writer = asyncio.StreamWriter
Respond = Callable[[int, bytes, Writer], Awaitable[bool]]
"""(request number, request body, writer) -> keep the connection open?"""


def chunked(*pieces: bytes) -> bytes:
    """A 200 reply whose body is `pieces`, one chunk each, as uvicorn streams one."""
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    return b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + body


def ok(body: bytes, *, headers: str = "") -> bytes:
    return (
        f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{headers}"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body


@dataclass
class Scripted:
    respond: Respond
    port: int = 0
    connections: int = 0
    bodies: list[bytes] = field(default_factory=list)

    async def handle(self, reader: Reader, writer: Writer) -> None:
        self.connections += 1
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                self.bodies.append(await reader.readexactly(length))
                if not await self.respond(len(self.bodies), self.bodies[-1], writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def serving(respond: Respond) -> AsyncIterator[Scripted]:
    scripted = Scripted(respond)
    server = await asyncio.start_server(scripted.handle, "127.0.0.1", 0)
    scripted.port = server.sockets[0].getsockname()[1]
    async with server:
        yield scripted


async def echo(_n: int, body: bytes, writer: Writer) -> bool:
    writer.write(ok(body))
    await writer.drain()
    return True


async def test_replies_and_reuses_one_connection() -> None:
    async with serving(echo) as server:
        client = Connections("127.0.0.1", server.port)
        assert await client.post("/a", b'{"x":1}') == Reply(200, b'{"x":1}')
        assert await client.post("/a", b"[2]") == Reply(200, b"[2]")
        await client.aclose()
    assert server.connections == 1


async def test_a_connection_the_server_closed_is_replaced() -> None:
    async def once(_n: int, body: bytes, writer: Writer) -> bool:
        writer.write(ok(body))
        await writer.drain()
        return False  # close after each reply, without saying so

    async with serving(once) as server:
        client = Connections("127.0.0.1", server.port)
        assert (await client.post("/a", b"1")).body == b"1"
        await asyncio.sleep(0.05)
        assert (await client.post("/a", b"2")).body == b"2"
        await client.aclose()
    assert server.connections == 2 and server.bodies == [b"1", b"2"]


async def test_a_stale_connection_not_yet_seen_closed_is_retried() -> None:
    async def once(_n: int, body: bytes, writer: Writer) -> bool:
        writer.write(ok(body))
        await writer.drain()
        return False

    async with serving(once) as server:
        client = Connections("127.0.0.1", server.port)
        assert (await client.post("/a", b"1")).body == b"1"  # no pause: EOF may be unseen
        assert (await client.post("/a", b"2")).body == b"2"
        await client.aclose()


async def test_connection_close_is_honoured() -> None:
    async def closing(_n: int, body: bytes, writer: Writer) -> bool:
        writer.write(ok(body, headers="connection: close\r\n"))
        await writer.drain()
        return True

    async with serving(closing) as server:
        client = Connections("127.0.0.1", server.port)
        await client.post("/a", b"1")
        await client.post("/a", b"2")
        await client.aclose()
    assert server.connections == 2


@pytest.mark.parametrize(
    "reply",
    [
        b'HTTP/1.1 400 Bad Request\r\ncontent-length: 14\r\n\r\n{"error":"no"}',
        chunked(b'{"error":', b'"no"}').replace(b"200 OK", b"400 Bad Request"),
    ],
    ids=["content-length", "chunked"],
)
async def test_error_statuses_pass_through(reply: bytes) -> None:
    async def bad(_n: int, _body: bytes, writer: Writer) -> bool:
        writer.write(reply)
        await writer.drain()
        return True

    async with serving(bad) as server:
        client = Connections("127.0.0.1", server.port)
        assert await client.post("/a", b"{}") == Reply(400, b'{"error":"no"}')
        await client.aclose()


@pytest.mark.parametrize(
    "reply",
    [
        b"",  # closed without a word
        b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\n\r\nno length",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n9\r\ncut",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\ncontent-length: 1\r\n\r\nx",
        b"SMTP ready\r\n\r\n",
    ],
    ids=["closed", "short-body", "no-length", "cut-chunk", "bad-chunk-size", "gzip", "not-http"],
)
async def test_broken_replies_are_http_errors(reply: bytes) -> None:
    async def broken(_n: int, _body: bytes, writer: Writer) -> bool:
        writer.write(reply)
        await writer.drain()
        return False

    async with serving(broken) as server:
        client = Connections("127.0.0.1", server.port)
        with pytest.raises(HTTPError):
            await client.post("/a", b"{}")
        await client.aclose()


async def test_nothing_listening_is_an_http_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(HTTPError, match="cannot connect"):
        await Connections("127.0.0.1", port).post("/a", b"{}")


async def test_a_cancelled_request_does_not_leave_its_connection_for_reuse() -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(n: int, body: bytes, writer: Writer) -> bool:
        if n == 1:
            started.set()
            await release.wait()
        writer.write(ok(body))
        await writer.drain()
        return True

    async with serving(slow) as server:
        client = Connections("127.0.0.1", server.port)
        task = asyncio.create_task(client.post("/a", b"1"))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (await client.post("/a", b"2")).body == b"2"
        release.set()
        await client.aclose()
    assert server.connections == 2


async def lines_of(response: Response) -> list[bytes]:
    return [line async for line in response.lines()]


async def test_a_reply_with_a_length_comes_as_the_same_lines() -> None:
    async def whole(_n: int, _body: bytes, writer: Writer) -> bool:
        writer.write(ok(b'{"a":1}\n{"b":"x\ry"}\n{"c":3}'))
        await writer.drain()
        return True

    async with serving(whole) as server:
        client = Connections("127.0.0.1", server.port)
        async with client.stream("/s", b"{}") as response:
            assert await lines_of(response) == [b'{"a":1}', b'{"b":"x\ry"}', b'{"c":3}']
        assert client.idle == 1
        await client.aclose()


async def test_a_chunked_stream_comes_as_lines_whatever_the_chunk_borders() -> None:
    async def stream(_n: int, _body: bytes, writer: Writer) -> bool:
        writer.write(chunked(b'{"a":1}\n{"b"', b":2}\n", b'{"c":3}\n{"d":4}\n'))
        await writer.drain()
        return True

    async with serving(stream) as server:
        client = Connections("127.0.0.1", server.port)
        async with client.stream("/s", b"{}") as response:
            assert response.status == 200
            assert await lines_of(response) == [b'{"a":1}', b'{"b":2}', b'{"c":3}', b'{"d":4}']
        async with client.stream("/s", b"{}") as response:  # read to its end: reused
            assert len(await lines_of(response)) == 4
        assert client.idle == 1
        await client.aclose()
    assert server.connections == 1


async def test_leaving_a_stream_early_closes_its_connection() -> None:
    """The runner must see the reader go away (it cancels the job then)."""
    closed = asyncio.Event()

    async def endless(_n: int, _body: bytes, writer: Writer) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        try:
            while True:
                writer.write(b"6\r\ntoken\n\r\n")
                await writer.drain()
                await asyncio.sleep(0.01)
        except ConnectionError:
            closed.set()
        return False

    async with serving(endless) as server:
        client = Connections("127.0.0.1", server.port)
        async with client.stream("/s", b"{}") as response:
            async for line in response.lines():
                assert line == b"token"
                break
        await asyncio.wait_for(closed.wait(), 5)
        await client.aclose()


async def test_a_stream_cut_mid_body_is_an_http_error() -> None:
    async def cut(_n: int, _body: bytes, writer: Writer) -> bool:
        writer.write(chunked(b"one\n")[:-5])  # no last chunk: the runner died
        await writer.drain()
        return False

    async with serving(cut) as server:
        client = Connections("127.0.0.1", server.port)
        got: list[bytes] = []
        with pytest.raises(HTTPError):
            async with client.stream("/s", b"{}") as response:
                async for line in response.lines():
                    got.append(line)
        assert got == [b"one"]
        await client.aclose()


async def test_closing_the_client_ends_a_stream_being_read_with_an_http_error() -> None:
    """A runner being stopped (server shutdown) must not keep a reader waiting for tokens
    that will never come: `aclose` closes busy connections too."""

    async def stalls(_n: int, _body: bytes, writer: Writer) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n6\r\ntoken\n\r\n")
        await writer.drain()
        await asyncio.sleep(30)  # the model "thinks" for a long time
        return False

    async with serving(stalls) as server:
        client = Connections("127.0.0.1", server.port)
        got: list[bytes] = []

        async def read() -> None:
            async with client.stream("/s", b"{}") as response:
                async for line in response.lines():
                    got.append(line)

        reader = asyncio.create_task(read())
        while not got:
            await asyncio.sleep(0.01)
        await client.aclose()
        with pytest.raises(HTTPError):
            await asyncio.wait_for(reader, 5)
        assert got == [b"token"]
