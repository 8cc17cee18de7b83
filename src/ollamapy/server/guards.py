"""Edge guards as pure ASGI middleware: DNS-rebinding host check and CORS.

Ollama refuses requests whose `Host` header is not a local name when it listens on
loopback (a web page on evil.com resolving to 127.0.0.1 must not reach the API), and
answers cross-site origins outside `OLLAMA_ORIGINS` and its default list with 403.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import json
import socket
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_LOCAL_SUFFIXES = (".localhost", ".local", ".internal")
_ALLOWED_HEADERS = (
    "Authorization, Content-Type, User-Agent, Accept, X-Requested-With, OpenAI-Beta, "
    "X-Stainless-Arch, X-Stainless-Async, X-Stainless-Custom-Poll-Interval, "
    "X-Stainless-Helper-Method, X-Stainless-Lang, X-Stainless-OS, X-Stainless-Package-Version, "
    "X-Stainless-Poll-Helper, X-Stainless-Retry-Count, X-Stainless-Runtime, "
    "X-Stainless-Runtime-Version, X-Stainless-Timeout"
)
_ALLOWED_METHODS = "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS"


def split_host_header(value: str) -> str:
    """`[::1]:11434` → `::1`, `example.com:80` → `example.com`, `localhost` → `localhost`."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


def is_allowed_host(host: str) -> bool:
    """True when a `Host` header names this machine (not a rebinding attacker's domain)."""
    if host in {"", "localhost"} or host.endswith(_LOCAL_SUFFIXES):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host == socket.gethostname().lower()
    return address.is_loopback or address.is_private or address.is_unspecified


def origin_allowed(origin: str, allowed: Iterable[str]) -> bool:
    """Match an `Origin` against patterns such as `http://localhost:*` or `*`."""
    return any(pattern == "*" or fnmatch.fnmatchcase(origin, pattern) for pattern in allowed)


class EdgeGuard:
    """Rejects rebinding hosts and foreign origins; adds CORS headers for allowed ones."""

    def __init__(self, app: ASGIApp, *, origins: tuple[str, ...], loopback_only: bool) -> None:
        self.app = app
        self.origins = origins
        self.loopback_only = loopback_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        if self.loopback_only and not is_allowed_host(split_host_header(headers.get("host", ""))):
            await _send_status(send, 403, "forbidden: host not allowed")
            return
        origin = headers.get("origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        if not origin_allowed(origin, self.origins):
            await _send_status(send, 403, "forbidden: origin not allowed")
            return
        if scope["method"] == "OPTIONS":
            await _send_preflight(send, origin)
            return
        await self.app(scope, receive, _with_cors(send, origin))


def _cors_headers(origin: str) -> list[tuple[bytes, bytes]]:
    return [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"vary", b"Origin"),
    ]


def _with_cors(send: Send, origin: str) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *_cors_headers(origin)]}
        await send(message)

    return wrapped


async def _send_preflight(send: Send, origin: str) -> None:
    headers = [
        *_cors_headers(origin),
        (b"access-control-allow-methods", _ALLOWED_METHODS.encode()),
        (b"access-control-allow-headers", _ALLOWED_HEADERS.encode()),
        (b"access-control-max-age", b"43200"),
    ]
    await send({"type": "http.response.start", "status": 204, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


async def _send_status(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
