"""`BlobTransport`: requests, heads and bodies against a scripted socket server (and TLS)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from ollamapy.registry import RegistryOptions, Remote
from ollamapy.registry.client import RegistryClient
from ollamapy.registry.transport import BlobTransport, BodyReader, body_reader

BODY = bytes(range(256)) * 400  # 102,400 bytes
Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Server:
    """A loopback server that answers each connection with a script; keeps request heads."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.heads: list[bytes] = []
        self.url = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            self.heads.append(await reader.readuntil(b"\r\n\r\n"))
            await self.script(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Script], Awaitable[Server]]]:
    servers: list[asyncio.Server] = []

    async def start(script: Script, tls: ssl.SSLContext | None = None) -> Server:
        server = Server(script)
        listening = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=tls)
        servers.append(listening)
        port = listening.sockets[0].getsockname()[1]
        server.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        return server

    yield start
    for listening in servers:
        listening.close()
        await listening.wait_closed()


def head(status: str = "200 OK", **headers: object) -> bytes:
    lines = [f"HTTP/1.1 {status}"] + [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def whole(body: bytes, extra: bytes = b"") -> Script:
    async def script(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(head(Content_Length=len(body)) + body + extra)
        await writer.drain()

    return script


@contextlib.asynccontextmanager
async def opened(
    url: str, method: str = "GET", timeout: float = 5.0, verify: bool = True, **kwargs: object
) -> AsyncIterator[httpx.Response]:
    """A streamed response through `BlobTransport`; the response and its client are closed
    on the way out (also when the request itself fails)."""
    async with httpx.AsyncClient(transport=BlobTransport(verify=verify), timeout=timeout) as c:
        request = c.build_request(method, url, **kwargs)  # type: ignore[arg-type]
        response = await c.send(request, stream=True)
        try:
            yield response
        finally:
            await response.aclose()


def reader_of(response: httpx.Response) -> BodyReader:
    reader = body_reader(response)
    assert reader is not None
    return reader


async def test_known_length_body_lands_in_the_callers_buffer(
    serve: Callable[..., Awaitable[Server]],
) -> None:
    server = await serve(whole(BODY, extra=b"never read"))
    async with opened(
        f"{server.url}/v2/a/b/blobs/x?sig=1", headers={"Range": "bytes=0-"}
    ) as response:
        buffer = memoryview(bytearray(len(BODY) + 100))
        got = 0
        while count := await reader_of(response).readinto(buffer[got:]):
            got += count
        assert bytes(buffer[:got]) == BODY  # and not a byte past Content-Length
    request_head = server.heads[0].decode()
    assert request_head.startswith("GET /v2/a/b/blobs/x?sig=1 HTTP/1.1\r\n")
    assert "range: bytes=0-" in request_head.lower()
    assert "connection: close" in request_head.lower()
    assert "keep-alive" not in request_head.lower()


async def test_aiter_raw_still_streams_a_raw_read_body(
    serve: Callable[..., Awaitable[Server]],
) -> None:
    server = await serve(whole(BODY))
    async with opened(server.url) as response:
        assert b"".join([chunk async for chunk in response.aiter_raw()]) == BODY
        assert body_reader(response) is None  # consumed: no second reader


async def test_patience_returns_what_arrived(serve: Callable[..., Awaitable[Server]]) -> None:
    release = asyncio.Event()

    async def script(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(head(Content_Length=100) + b"x" * 10)
        await writer.drain()
        await release.wait()
        writer.write(b"y" * 90)
        await writer.drain()

    server = await serve(script)
    async with opened(server.url) as response:
        reader = reader_of(response)
        buffer = memoryview(bytearray(100))
        assert await reader.readinto(buffer, patience=0.05) == 10
        release.set()
        assert await reader.readinto(buffer[10:]) == 90
        assert bytes(buffer) == b"x" * 10 + b"y" * 90
        assert await reader.readinto(buffer) == 0


async def test_a_cut_body_gives_its_bytes_then_an_error(
    serve: Callable[..., Awaitable[Server]],
) -> None:
    async def script(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(head(Content_Length=100) + b"z" * 60)
        await writer.drain()

    server = await serve(script)
    async with opened(server.url) as response:
        reader = reader_of(response)
        buffer = memoryview(bytearray(100))
        assert await reader.readinto(buffer) == 60
        with pytest.raises(httpx.RemoteProtocolError, match="40 bytes missing"):
            await reader.readinto(buffer[60:])


async def test_a_stalled_body_times_out(serve: Callable[..., Awaitable[Server]]) -> None:
    async def script(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(head(Content_Length=100))
        await writer.drain()
        await asyncio.sleep(5)

    server = await serve(script)
    async with opened(server.url, timeout=0.2) as response:
        with pytest.raises(httpx.ReadTimeout):
            await reader_of(response).readinto(memoryview(bytearray(100)))


async def test_chunked_and_head_answers_go_through_h11(
    serve: Callable[..., Awaitable[Server]],
) -> None:
    async def chunked(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(head("404 Not Found", Transfer_Encoding="chunked"))
        writer.write(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        await writer.drain()

    server = await serve(chunked)
    async with opened(server.url) as response:
        assert response.status_code == 404
        assert body_reader(response) is None
        assert await response.aread() == b"hello world"

    server = await serve(whole(b""))
    async with opened(server.url, method="HEAD") as response:
        assert body_reader(response) is None and await response.aread() == b""


async def test_protocol_and_connection_errors_are_httpx_errors(
    serve: Callable[..., Awaitable[Server]],
) -> None:
    async def garbage(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()

    server = await serve(garbage)
    with pytest.raises(httpx.RemoteProtocolError):
        async with opened(server.url):
            pass
    with pytest.raises(httpx.ConnectError):
        async with opened("http://127.0.0.1:9/"):  # nothing listens on the discard port
            pass


async def test_requests_with_a_body_go_to_the_fallback() -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        return httpx.Response(201)

    transport = BlobTransport(fallback=lambda: httpx.MockTransport(answer))
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.post("http://127.0.0.1:9/upload", content=b"data")
    assert response.status_code == 201 and seen == ["POST"]


async def test_tls_bodies_are_read_raw_too(
    serve: Callable[..., Awaitable[Server]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is missing: scripts/test.sh installs openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    server = await serve(whole(BODY), tls)

    with pytest.raises(httpx.ConnectError):  # not trusted yet: verification is on
        async with opened(server.url):
            pass
    async with opened(server.url, verify=False) as insecure:  # `insecure` pulls skip the check
        assert insecure.status_code == 200

    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    async with opened(server.url) as response:
        buffer = memoryview(bytearray(len(BODY)))
        got = 0
        while count := await reader_of(response).readinto(buffer[got:]):
            got += count
        assert bytes(buffer) == BODY


@pytest.mark.parametrize(
    ("environment", "raw"),
    [({}, True), ({"HTTPS_PROXY": "http://127.0.0.1:9"}, False)],
    ids=["direct", "proxy-in-environment"],
)
async def test_blob_downloads_use_the_raw_transport_unless_a_proxy_is_set(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], raw: bool
) -> None:
    for name in (
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    async with RegistryClient(Remote.resolve("example.com/a/b", False), RegistryOptions()) as c:
        assert (c.bulk is not c.http) is raw
        assert isinstance(c.bulk._transport, BlobTransport) is raw
