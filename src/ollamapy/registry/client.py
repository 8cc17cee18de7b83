"""One registry conversation: an async httpx client with auth, retries and redirects.

`open` sends a single request and answers 401 challenges (at most twice) and, only when
asked (blob downloads), follows redirects up to a bound, dropping credentials for any
other host. `call` adds bounded retries with exponential backoff for network errors and
5xx/429 answers, and maps error statuses to the project's errors with the registry's
message (never a header or credential), and network failures to messages that name the
host and the fix (`errors.network_error`), never httpx's or OpenSSL's own text.

Blob downloads (`open(..., bulk=True)`) go through `BlobTransport`, whose bodies can be
read straight into the downloader's buffers; auth, redirects and statuses are handled
here exactly as for other requests. When the environment names a proxy they use the
standard transport instead, since `BlobTransport` only connects to origins directly.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from types import TracebackType

import httpx

from ollamapy import __version__
from ollamapy.errors import OllamaError
from ollamapy.registry.auth import Authenticator, read_capped
from ollamapy.registry.errors import (
    RegistryError,
    RegistryNotFoundError,
    RegistryUnauthorizedError,
    network_error,
)
from ollamapy.registry.options import RegistryOptions
from ollamapy.registry.remote import Remote
from ollamapy.registry.transport import BlobTransport

Body = bytes | Callable[[], AsyncIterator[bytes]] | None
"""A request body: bytes, or a factory of fresh chunk streams (so a 401 can resend it)."""

MAX_ERROR_BODY = 64 * 1024
_RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})
_MAX_AUTH_ROUNDS = 2


def is_retryable(status: int) -> bool:
    return status in _RETRYABLE


def status_error(status: int, body: bytes) -> OllamaError:
    """The error for a failed registry answer, in Ollama's words where it has them."""
    if status == 404:
        return RegistryNotFoundError("file does not exist")
    if status in (401, 403):
        return RegistryUnauthorizedError("unauthorized: access denied")
    detail = registry_message(body)
    message = f"{status}: {detail}" if detail else f"{status}"
    return RegistryError(message, transient=is_retryable(status))


def registry_message(body: bytes) -> str:
    """The registry's own error text (distribution's `errors[].message`), shortened."""
    try:
        data = json.loads(body)
        messages = [str(e.get("message") or e.get("code")) for e in data["errors"]]
        text = "; ".join(messages)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        text = body.decode("utf-8", errors="replace")
    return " ".join(text.split())[:512]


class RegistryClient:
    """Requests to one registry, sharing a connection pool and the current credentials."""

    def __init__(self, remote: Remote, options: RegistryOptions) -> None:
        self.remote = remote
        self.settings = options.settings
        timeout = httpx.Timeout(
            self.settings.read_timeout, connect=self.settings.connect_timeout, pool=None
        )
        limits = httpx.Limits(
            max_connections=self.settings.max_connections + 2,
            max_keepalive_connections=self.settings.max_connections,
        )
        headers = {"User-Agent": f"ollamapy/{__version__}"}
        verify = not options.insecure  # `insecure`, as in Ollama, also skips TLS checks
        self.http = httpx.AsyncClient(
            timeout=timeout, limits=limits, follow_redirects=False, headers=headers, verify=verify
        )
        self.bulk = self.http
        """The client for blob bodies (see the module notes)."""
        if not urllib.request.getproxies():
            self.bulk = httpx.AsyncClient(
                timeout=timeout,
                follow_redirects=False,
                headers=headers,
                transport=BlobTransport(
                    lambda: httpx.AsyncHTTPTransport(verify=verify), verify=verify
                ),
            )
        self.auth = Authenticator(remote, options, self.http)

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.http.aclose()
        finally:
            if self.bulk is not self.http:
                await self.bulk.aclose()

    async def open(
        self,
        method: str,
        url: httpx.URL,
        *,
        headers: Mapping[str, str] | None = None,
        body: Body = None,
        redirects: int = 0,
        bulk: bool = False,
    ) -> httpx.Response:
        """Send one request; the caller reads (or closes) the streaming response.

        `bulk` marks a blob download (see the module notes and `transport.body_reader`)."""
        http = self.bulk if bulk else self.http
        auth_rounds = 0
        while True:
            request = http.build_request(
                method,
                url,
                headers={**(headers or {}), **self.auth.headers_for(url)},
                content=body() if callable(body) else body,
            )
            response = await http.send(request, stream=True)
            if response.status_code == 401 and self.remote.same_origin(url):
                await response.aclose()
                if auth_rounds >= _MAX_AUTH_ROUNDS:
                    raise RegistryUnauthorizedError("unauthorized: access denied")
                auth_rounds += 1
                await self.auth.renew(response)
                continue
            if response.is_redirect and redirects > 0 and "location" in response.headers:
                await response.aclose()
                url = url.join(response.headers["location"])
                redirects -= 1
                continue
            if response.is_redirect and "location" in response.headers:
                await response.aclose()
                raise RegistryError(f"{method} {url.copy_with(query=None)}: too many redirects")
            return response

    async def call(
        self,
        method: str,
        url: httpx.URL,
        *,
        ok: Collection[int],
        headers: Mapping[str, str] | None = None,
        body: Body = None,
        limit: int = MAX_ERROR_BODY,
        retry: bool = True,
    ) -> tuple[httpx.Response, bytes]:
        """A request whose answer must be one of `ok`; returns it with its (capped) body."""
        attempts = self.settings.retries + 1 if retry else 1
        refused = 0
        for attempt in range(attempts):
            final = attempt == attempts - 1
            try:
                response = await self.open(method, url, headers=headers, body=body)
                if response.status_code in ok:
                    return response, await read_capped(response, limit)
            except httpx.TransportError as exc:  # reading the body too: no raw httpx text
                refused += isinstance(exc, httpx.ConnectError)
                if final or refused > self.settings.connect_retries:
                    raise network_error(exc, url) from None
            else:
                detail = await _error_body(response)
                if final or not is_retryable(response.status_code):
                    raise status_error(response.status_code, detail)
            await asyncio.sleep(self.settings.backoff(attempt))
        raise AssertionError("unreachable")  # pragma: no cover


async def _error_body(response: httpx.Response) -> bytes:
    try:
        return await read_capped(response, MAX_ERROR_BODY)
    except (RegistryError, httpx.TransportError):
        return b""
