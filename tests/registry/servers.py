"""Test servers on loopback: the real `docker-registry`, and a scriptable reverse proxy.

The proxy stands in front of the real registry to make the failures and auth flows the
tests need: it can cut a blob download after N bytes, corrupt a byte, slow a download,
demand a bearer token (issued by its own `/token` endpoint, which can require basic
credentials or verify Ollama's ed25519 signature), serve a hostile manifest, and it logs
every request it forwards. Using a proxy for bearer auth avoids configuring the registry's
`auth: token:` (which needs a certificate chain); the registry itself still does all the
storage and protocol work.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import shutil
import struct
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from bench.registry import (
    Registry,
    RegistryMissingError,
    free_port,
    serve_registry,
    wait_until_up,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ollamapy.registry import ed25519
from tests.asgi import start_server

__all__ = ["Registry", "free_port", "wait_until_up"]  # re-exported for the tests

TOKEN = "test-token-" + secrets.token_hex(8)


def run_registry(
    root: Path, htpasswd: tuple[str, str] | None = None, *, relative_urls: bool = False
) -> Iterator[Registry]:
    """Serve `docker-registry` (deletes allowed) on a free loopback port until the
    generator is closed; with `htpasswd`, behind HTTP basic auth."""
    auth = ""
    if htpasswd is not None:
        auth = (
            f"auth:\n  htpasswd:\n    realm: basic-realm\n    path: {_htpasswd(root, *htpasswd)}\n"
        )
    try:
        with serve_registry(root, auth_config=auth, delete=True, relative_urls=relative_urls) as r:
            yield r
    except RegistryMissingError as missing:
        pytest.fail(str(missing))


def _htpasswd(root: Path, user: str, password: str) -> Path:
    tool = shutil.which("htpasswd")
    if tool is None:
        pytest.fail("htpasswd is missing: install it with `apt-get install apache2-utils`")
    path = root / "htpasswd"
    result = subprocess.run(
        [tool, "-Bbn", user, password], check=True, capture_output=True, text=True
    )
    path.write_text(result.stdout)
    return path


# --------------------------------------------------------------------- proxy


@dataclass
class Logged:
    method: str
    path: str
    query: str
    headers: dict[str, str]


@dataclass
class ProxyScript:
    """What the proxy does; tests change it between pulls."""

    cuts: list[int] = field(default_factory=list)
    """Per blob GET, in order: drop the connection after this many body bytes."""
    corrupt_blobs: bool = False
    slow_blobs: float = 0.0
    """Seconds to sleep between 4 KiB pieces of blob bodies."""
    require_token: bool = False
    token_basic: tuple[str, str] | None = None
    """Credentials the token endpoint demands (basic auth)."""
    token_verify_signature: bool = False
    """Make the token endpoint demand a valid Ollama ed25519 signature."""
    manifest_override: bytes | None = None
    redirect_blobs: str | None = None
    """Answer blob GETs with a 307 to this base URL (same path and query)."""
    realm_host: str | None = None
    """Put the token realm on this host instead of the proxy's own."""
    log: list[Logged] = field(default_factory=list)
    token_requests: list[Logged] = field(default_factory=list)

    def blob_gets(self) -> list[Logged]:
        return [r for r in self.log if r.method == "GET" and "/blobs/sha256:" in r.path]


class Proxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.script = ProxyScript()
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self._client: httpx.AsyncClient | None = None
        self.app = Starlette(
            routes=[
                Route("/token", self.token, methods=["GET"]),
                Route(
                    "/{path:path}",
                    self.forward,
                    methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
                ),
            ]
        )

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(base_url=f"http://{self.upstream}", timeout=60)
        return self._client

    async def token(self, request: Request) -> Response:
        self.script.token_requests.append(_logged(request))
        header = request.headers.get("authorization", "")
        if self.script.token_basic is not None:
            user, password = self.script.token_basic
            expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
            if header != expected:
                return JSONResponse({"error": "bad credentials"}, status_code=401)
        if self.script.token_verify_signature and not _valid_signature(request, header):
            return JSONResponse({"error": "bad signature"}, status_code=401)
        return JSONResponse({"access_token": TOKEN})

    async def forward(self, request: Request) -> Response:
        script = self.script
        script.log.append(_logged(request))
        if script.require_token and request.headers.get("authorization") != f"Bearer {TOKEN}":
            challenge = (
                f'Bearer realm="http://{script.realm_host or self.host}/token",'
                'service="test-registry",'
                f'scope="repository:{_repository(request.url.path)}:pull"'
            )
            return JSONResponse(
                {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
                status_code=401,
                headers={"WWW-Authenticate": challenge},
            )
        if script.manifest_override is not None and "/manifests/" in request.url.path:
            return Response(
                script.manifest_override,
                media_type="application/vnd.docker.distribution.manifest.v2+json",
            )
        if (
            script.redirect_blobs
            and request.method == "GET"
            and "/blobs/sha256:" in request.url.path
        ):
            target = f"{script.redirect_blobs}{request.url.path}?{request.url.query}"
            return Response(status_code=307, headers={"Location": target})
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in ("authorization", "host")
        }
        headers["host"] = self.host
        upstream_request = self.client.build_request(
            request.method,
            request.url.path,
            params=request.url.query,
            headers=headers,
            content=request.stream() if request.method in ("POST", "PUT", "PATCH") else None,
        )
        response = await self.client.send(upstream_request, stream=True)
        is_blob = request.method == "GET" and "/blobs/sha256:" in request.url.path
        out_headers = {
            k: v
            for k, v in response.headers.items()
            if k.lower() not in ("transfer-encoding", "connection")
        }
        body = self._blob_body(response) if is_blob else _relay(response)
        return StreamingResponse(body, status_code=response.status_code, headers=out_headers)

    async def _blob_body(self, response: httpx.Response) -> AsyncIterator[bytes]:
        script = self.script
        cut = script.cuts.pop(0) if script.cuts else None
        sent = 0
        try:
            async for chunk in response.aiter_raw(4096):
                if script.corrupt_blobs and sent == 0 and chunk:
                    chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
                if cut is not None and sent + len(chunk) >= cut:
                    yield chunk[: cut - sent]
                    raise ConnectionAbortedError("proxy cut the connection")
                sent += len(chunk)
                yield chunk
                if script.slow_blobs:
                    await asyncio.sleep(script.slow_blobs)
        finally:
            await response.aclose()


async def _relay(response: httpx.Response) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.aiter_raw():
            yield chunk
    finally:
        await response.aclose()


def _logged(request: Request) -> Logged:
    return Logged(request.method, request.url.path, request.url.query, dict(request.headers))


def _repository(path: str) -> str:
    parts = path.split("/")
    return "/".join(parts[2:4]) if len(parts) > 4 else ""


def _valid_signature(request: Request, header: str) -> bool:
    """Check Ollama's `<ssh public key blob>:<signature>` over `GET,<url>,<hash>`."""
    try:
        blob_b64, signature_b64 = header.split(":", 1)
        blob = base64.b64decode(blob_b64)
        (type_len,) = struct.unpack(">I", blob[:4])
        public = blob[4 + type_len + 4 :]
        body_hash = base64.b64encode(
            b"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        )
        message = f"GET,{request.url},".encode() + body_hash
        return ed25519.verify(public, message, base64.b64decode(signature_b64))
    except (ValueError, struct.error):
        return False


def run_proxy(proxy: Proxy) -> Iterator[Proxy]:
    with serve_app(proxy.app, proxy.port):
        yield proxy


@contextlib.contextmanager
def serve_app(app: Any, port: int) -> Iterator[str]:
    """Serve an ASGI app with uvicorn in a thread; yields its base URL."""
    started = start_server(app, "127.0.0.1", port, log_level="critical")
    try:
        yield started.url
    finally:
        started.stop(timeout=10)


@contextlib.contextmanager
def serve_plain_http() -> Iterator[str]:
    """A plain HTTP server (no TLS) on loopback that answers everything 404; yields
    `host:port`. Spoken to over https, it answers the TLS handshake in plain HTTP."""

    async def anything(request: Request) -> Response:
        return Response("not a registry", status_code=404)

    methods = ["GET", "HEAD", "POST", "PUT", "PATCH"]
    app = Starlette(routes=[Route("/{path:path}", anything, methods=methods)])
    port = free_port()
    with serve_app(app, port):
        yield f"127.0.0.1:{port}"
