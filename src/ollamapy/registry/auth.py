"""Registry authentication: basic credentials, the bearer token flow, Ollama's key.

A registry answers 401 with `WWW-Authenticate`. For `Basic` we send the request's
username/password. For `Bearer realm=...,service=...,scope=...` we GET the realm with
the service and scopes and use the `token` (or `access_token`) it returns. The token
request itself carries the basic credentials when we have them, otherwise Ollama's
signature (`<public key>:<signature>` over `GET,<url>,<base64(hex(sha256("")))>`), which
is how ollama.com identifies a user. Nothing is ever sent to a host other than the
registry's own, except basic credentials to a realm over https, as docker does.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import time
from dataclasses import dataclass

import httpx

from ollamapy.registry.errors import RegistryError, RegistryUnauthorizedError
from ollamapy.registry.keys import default_key_path, load_or_create_key
from ollamapy.registry.options import RegistryOptions
from ollamapy.registry.remote import Remote

MAX_TOKEN_RESPONSE = 1024 * 1024
_PARAM_RE = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*,?')
_EMPTY_BODY_HASH = base64.b64encode(hashlib.sha256(b"").hexdigest().encode()).decode()


@dataclass(frozen=True, slots=True)
class Challenge:
    """One parsed `WWW-Authenticate` header."""

    scheme: str
    """Lower-case: `basic` or `bearer` (others are reported as unsupported)."""
    realm: str = ""
    service: str = ""
    scope: str = ""


def parse_challenge(header: str) -> Challenge:
    """Parse `Bearer realm="...",service="...",scope="a b"` (quoted or token values)."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    for match in _PARAM_RE.finditer(rest):
        value = match.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[match.group(1).lower()] = value
    return Challenge(
        scheme.lower(), params.get("realm", ""), params.get("service", ""), params.get("scope", "")
    )


class Authenticator:
    """Holds the current `Authorization` value for one registry and renews it on 401."""

    def __init__(self, remote: Remote, options: RegistryOptions, http: httpx.AsyncClient) -> None:
        self._remote = remote
        self._options = options
        self._http = http
        self._authorization: str | None = None

    def headers_for(self, url: httpx.URL) -> dict[str, str]:
        """Credentials only for the registry itself: never for a redirect to storage."""
        if self._authorization is None or not self._remote.same_origin(url):
            return {}
        return {"Authorization": self._authorization}

    async def renew(self, response: httpx.Response) -> None:
        """Answer a 401: find credentials for its challenge, or raise Unauthorized."""
        challenge = parse_challenge(response.headers.get("www-authenticate", ""))
        previous = self._authorization
        if challenge.scheme == "basic":
            self._authorization = self._basic_header()
        elif challenge.scheme == "bearer":
            self._authorization = "Bearer " + await self._fetch_token(challenge)
        else:
            raise RegistryUnauthorizedError("unauthorized: access denied")
        if self._authorization is None or (
            challenge.scheme == "basic" and self._authorization == previous
        ):
            raise RegistryUnauthorizedError("unauthorized: access denied")

    def _basic_header(self) -> str | None:
        if not self._options.has_basic_credentials:
            return None
        raw = f"{self._options.username}:{self._options.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    async def _fetch_token(self, challenge: Challenge) -> str:
        url = self._token_url(challenge)
        request = self._http.build_request("GET", url, headers=self._token_request_headers(url))
        response = await self._http.send(request, stream=True)
        body = await read_capped(response, MAX_TOKEN_RESPONSE)
        if response.status_code in (401, 403):
            raise RegistryUnauthorizedError("unauthorized: access denied")
        if response.status_code >= 400:
            raise RegistryError(f"token request failed: {response.status_code}")
        return _token_from(body)

    def _token_url(self, challenge: Challenge) -> httpx.URL:
        try:
            realm = httpx.URL(challenge.realm)
        except httpx.InvalidURL:
            raise RegistryError("registry sent an invalid token realm") from None
        if realm.scheme not in ("http", "https") or not realm.host:
            raise RegistryError("registry sent an invalid token realm")
        params: list[tuple[str, str]] = list(realm.params.multi_items())
        if challenge.service:
            params.append(("service", challenge.service))
        params += [("scope", scope) for scope in challenge.scope.split() if scope]
        params.append(("ts", str(int(time.time()))))
        params.append(("nonce", secrets.token_urlsafe(16)))
        return realm.copy_with(params=params)

    def _token_request_headers(self, url: httpx.URL) -> dict[str, str]:
        """Basic credentials (same host or https), else Ollama's signature (same host only)."""
        basic = self._basic_header()
        same_host = self._remote.same_origin(url)
        if basic is not None and (same_host or url.scheme == "https"):
            return {"Authorization": basic}
        if same_host and basic is None:
            return {"Authorization": self._signature(url)}
        return {}

    def _signature(self, url: httpx.URL) -> str:
        key = load_or_create_key(self._options.key_path or default_key_path())
        return key.sign_header(f"GET,{url},{_EMPTY_BODY_HASH}".encode())


def _token_from(body: bytes) -> str:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise RegistryError("token response is not valid JSON") from None
    token = data.get("token") or data.get("access_token") if isinstance(data, dict) else None
    if not isinstance(token, str) or not token:
        raise RegistryError("token response has no token")
    return token


async def read_capped(response: httpx.Response, limit: int) -> bytes:
    """The whole body, or `RegistryError` once it passes `limit`; always closes."""
    body = bytearray()
    try:
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > limit:
                raise RegistryError(f"registry response larger than {limit} bytes")
    finally:
        await response.aclose()
    return bytes(body)
