"""API keys at the edge: an ASGI middleware that admits, refuses or slows each request.

Once the key file holds a key (or `OLLAMA_API_KEYS_REQUIRED` is set), every request but
`GET /` and `HEAD /` (and the web UI's static files: `auth.scopes.is_public`) must carry one,
as `Authorization: Bearer <key>` (the `openai` and `ollama` clients, and the `anthropic` SDK
2.x) or `x-api-key: <key>` (Anthropic's API header):

* no key, an unknown key or an expired one: 401; a burst of those from one address: 429
  with `Retry-After` (`auth.limiter`), decided before the key is looked at;
* a key without the route's scope, or naming a model outside its patterns: 403;
* a key limited to some models sees only those in `/api/tags`, `/api/ps` and `/v1/models`.

Routes and scopes are one table (`auth.scopes.ROUTE_RULES`). The model names come from the
JSON body (`model`, `name`, `source`, `destination`, `from`, and a legacy `modelfile`'s
FROM); the body is read only for a key limited to some models, and handed on unchanged:
the route then reads it from the replayed message, and the client's disconnect still
arrives after it, so streaming and cancellation are untouched. Refusals use the path's API
shape (`auth.replies`). The key file is re-read whenever it changes on disk, so `ollama
keys create` and `revoke` take effect on the next request.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ollamapy.auth import ApiKey, FailureLimiter, KeyFile, KeyFileError, KeyRing, rule_for
from ollamapy.auth.replies import refusal_body
from ollamapy.auth.scopes import ModelSource, is_public, path_model
from ollamapy.errors import ModelfileError
from ollamapy.modelfile import Instruction, looks_like_path, parse
from ollamapy.server.http import MAX_JSON_BODY

log = logging.getLogger(__name__)

MODEL_FIELDS = ("model", "name", "source", "destination", "from")


class KeySource:
    """The key file's current keys, re-read when its inode, size, mtime or ctime changes
    (one `stat` per request; every write renames a new file in, so the inode changes)."""

    def __init__(self, path: Path) -> None:
        self.file = KeyFile(path)
        self._signature: tuple[int, ...] | None = None
        self._ring = KeyRing()

    def current(self) -> KeyRing:
        try:
            st = os.stat(self.file.path)
        except FileNotFoundError:
            self._signature, self._ring = None, KeyRing()
            return self._ring
        except OSError as exc:
            log.error("cannot read the API key file: %s; refusing every key", exc.strerror)
            return KeyRing(locked=True)
        signature = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if signature != self._signature:
            self._ring = self._load()
            self._signature = signature
        return self._ring

    def _load(self) -> KeyRing:
        try:
            ring = self.file.load()
        except KeyFileError as exc:  # fail closed: a broken file must not open the server
            log.error("%s; refusing every key until it is fixed", exc.message)
            return KeyRing(locked=True)
        log.info("loaded %d API key(s) from %s", len(ring.keys), self.file.path)
        return ring


class KeyGuard:
    """Requires API keys once any exist; see the module docstring for the rules."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        keys: KeySource,
        required: bool = False,
        limiter: FailureLimiter | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.app = app
        self.keys = keys
        self.required = required
        self.limiter = limiter or FailureLimiter()
        self.now = now

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_public(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        ring = self.keys.current()
        if not ring.active and not self.required:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        address = _address(scope)
        wait = self.limiter.retry_after(address)
        if wait:
            await _refuse(
                send,
                path,
                429,
                "too many failed API key attempts; try again later",
                ((b"retry-after", str(wait).encode()),),
            )
            return
        key, problem = self._authenticate(ring, _presented_keys(scope))
        if key is None:
            self.limiter.failed(address)
            if self.limiter.retry_after(address):
                log.warning("slowing down failed API key attempts from %s", address)
            await _refuse(
                send, path, 401, problem, ((b"www-authenticate", b'Bearer realm="ollama"'),)
            )
            return
        await self._authorize(key, scope, receive, send)

    def _authenticate(self, ring: KeyRing, secrets: list[str]) -> tuple[ApiKey | None, str]:
        if not secrets:
            return None, "unauthorized: this server needs an API key (set OLLAMA_API_KEY)"
        key = next((found for s in secrets if (found := ring.find(s)) is not None), None)
        if key is None:
            return None, "unauthorized: invalid API key"
        if key.expired(self.now()):
            return None, f"unauthorized: API key {key.name!r} has expired"
        return key, ""

    async def _authorize(self, key: ApiKey, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        rule = rule_for(path)
        if not key.allows_scope(rule.scope):
            message = f"forbidden: API key {key.name!r} lacks the {rule.scope} scope"
            await _refuse(send, path, 403, message)
            return
        names: list[str] = []
        if key.models and rule.models is ModelSource.PATH:
            names = [path_model(path)]
        elif key.models and rule.models is ModelSource.BODY:
            body = await _read_body(receive)
            if body is None:
                return  # the client left while sending its body
            if len(body) > MAX_JSON_BODY:
                await _refuse(send, path, 400, "request body too large")
                return
            names = body_models(body)
            receive = _replay(body, receive)
        for name in names:
            if not key.allows_model(name):
                message = f"forbidden: API key {key.name!r} may not use model {name!r}"
                await _refuse(send, path, 403, message)
                return
        scope.setdefault("state", {})["api_key"] = key.name  # for request logs: name only
        listing = LISTINGS.get(path)
        if key.models and listing is not None:
            send = _filtered_listing(send, key, *listing)
        await self.app(scope, receive, send)


LISTINGS: dict[str, tuple[str, str]] = {
    "/api/tags": ("models", "model"),
    "/api/ps": ("models", "model"),
    "/v1/models": ("data", "id"),
}
"""Routes that list models: (the list's field, each entry's name field). A key limited to
some models sees only those in them."""


def _filtered_listing(send: Send, key: ApiKey, field: str, name_field: str) -> Send:
    """A `send` that holds a listing's (small, unstreamed) JSON answer and drops the entries
    naming models outside the key's patterns; any other answer passes unchanged."""
    start: Message | None = None
    body = bytearray()

    async def filtered(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            start = message
            return
        if start is None or message["type"] != "http.response.body":
            await send(message)
            return
        body.extend(message.get("body", b""))
        if message.get("more_body", False):
            return
        ok = start["status"] == 200
        content = _filter_entries(bytes(body), key, field, name_field) if ok else None
        if content is None:
            await send(start)
            await send({"type": "http.response.body", "body": bytes(body)})
            return
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(content)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    return filtered


def _filter_entries(body: bytes, key: ApiKey, field: str, name_field: str) -> bytes | None:
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get(field), list):
        return None
    data[field] = [
        entry
        for entry in data[field]
        if isinstance(entry, dict) and key.allows_model(str(entry.get(name_field, "")))
    ]
    return json.dumps(data, separators=(",", ":")).encode()


def _address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else ""


def _presented_keys(scope: Scope) -> list[str]:
    """The keys a request carries: `Authorization: Bearer <key>`, then `x-api-key: <key>`.

    Both are tried, so a client that sends a placeholder bearer token (`api_key="ollama"` is
    common with the `openai` SDK) and the real key in `x-api-key` is still admitted.
    """
    bearer = api_key = ""
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").lower()
        if name == "authorization":
            scheme, _, value = raw_value.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer":
                bearer = value.strip()
        elif name == "x-api-key":
            api_key = raw_value.decode("latin-1").strip()
    return [key for key in (bearer, api_key) if key]


def body_models(body: bytes) -> list[str]:
    """Every model name a JSON body names (see `MODEL_FIELDS`); none if it is not JSON.

    A body that is not a JSON object names no model here and is refused by its route with a
    400. A legacy `modelfile`'s FROM counts when it names a model rather than a path.
    """
    try:
        data: Any = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return []
    if not isinstance(data, dict):
        return []
    names = [data[field] for field in MODEL_FIELDS if isinstance(data.get(field), str)]
    modelfile = data.get("modelfile")
    if isinstance(modelfile, str):
        names.extend(_modelfile_models(modelfile))
    return [name for name in names if name]


def _modelfile_models(text: str) -> list[str]:
    try:
        modelfile = parse(text)
    except ModelfileError:
        return []
    return [
        command.value
        for command in modelfile.commands
        if command.instruction is Instruction.FROM and not looks_like_path(command.value)
    ]


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body (stopping past the JSON limit); None if the client left."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body += message.get("body", b"")
        if not message.get("more_body", False) or len(body) > MAX_JSON_BODY:
            return bytes(body)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that first hands over the body already read, then the real messages."""
    pending = True

    async def replayed() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _refuse(
    send: Send, path: str, status: int, message: str, extra: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    body = refusal_body(path, status, message)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
