"""API keys through the real app (scripted runner): who is admitted, who is refused, and how.

The server starts with no key (so the fixture can create its model), then keys are written
to the key file beside the store while it runs: that they take effect at once also pins the
reload on change.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from ollamapy.auth import FailureLimiter, KeyFile, Scope, rule_for
from ollamapy.auth.scopes import ROUTE_RULES, is_public
from ollamapy.config import Config, parse_host
from ollamapy.server.app import create_app
from ollamapy.server.auth import KeyGuard, KeySource, body_models
from tests.fakes import MODEL, Script, ScriptedServer, serve_scripted


@dataclass
class Keyed:
    """The scripted server and its key file, with one key per role."""

    server: ScriptedServer
    keys: KeyFile
    secrets: dict[str, str]

    def request(
        self, method: str, path: str, key: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.secrets.get(key, key)}"} if key else {}
        headers |= kwargs.pop("headers", {})
        return httpx.request(
            method, f"{self.server.url}{path}", headers=headers, timeout=30, **kwargs
        )


ROLES: dict[str, tuple[set[Scope], list[str]]] = {
    "admin": ({Scope.ALL}, []),
    "chat": ({Scope.GENERATE}, []),
    "chat-scripted": ({Scope.GENERATE}, ["scripted"]),
    "chat-other": ({Scope.GENERATE}, ["other*"]),
    "embedder": ({Scope.EMBED}, []),
    "ops": ({Scope.MANAGE}, ["scripted", "copy*"]),
    "scraper": ({Scope.METRICS}, []),
}


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[Keyed]:
    for server in serve_scripted(tmp_path, Script()):
        keys = KeyFile(tmp_path / "keys.json")
        secrets = {name: keys.create(name, *ROLES[name])[0] for name in ROLES}
        yield Keyed(server, keys, secrets)


ADMIT, REFUSE = True, False


def chat_body(model: str = MODEL, stream: bool = False) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}


def test_with_no_keys_nothing_changes(tmp_path: Path) -> None:
    for server in serve_scripted(tmp_path, Script()):
        response = httpx.post(f"{server.url}/api/chat", json=chat_body(), timeout=30)
        assert response.status_code == 200
        assert response.json()["message"]["content"] == "Hello there"


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_the_root_stays_open(keyed: Keyed, method: str) -> None:
    assert keyed.request(method, "/").status_code == 200


@pytest.mark.parametrize("path", ["/ui", "/ui/index.html"])
def test_the_web_ui_files_load_without_a_key(keyed: Keyed, path: str) -> None:
    """The page asks for a key when the API says 401: its files are served (or, without the
    UI, the router's 404), never refused for want of a key."""
    assert keyed.request("GET", path).status_code not in (401, 403, 429)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/ui"),
        ("GET", "/api/tags"),
        ("GET", "/api/version"),
        ("POST", "/api/chat"),
        ("POST", "/"),
        ("GET", "/no/such/route"),
        ("GET", "/v1/models"),
    ],
    ids=lambda v: str(v),
)
def test_every_other_route_needs_a_key(keyed: Keyed, method: str, path: str) -> None:
    response = keyed.request(method, path, json=chat_body())
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_a_placeholder_bearer_does_not_hide_a_real_x_api_key(keyed: Keyed) -> None:
    headers = {"Authorization": "Bearer ollama", "x-api-key": keyed.secrets["chat"]}
    response = keyed.request("POST", "/api/chat", json=chat_body(), headers=headers)
    assert response.status_code == 200, response.text


def test_a_missing_key_is_a_native_401_that_names_the_variable(keyed: Keyed) -> None:
    response = keyed.request("POST", "/api/chat", json=chat_body())
    assert response.json() == {
        "error": "unauthorized: this server needs an API key (set OLLAMA_API_KEY)"
    }


def test_a_wrong_key_is_refused(keyed: Keyed) -> None:
    wrong = keyed.secrets["admin"][:-2] + "xx"
    response = keyed.request("GET", "/api/tags", wrong)
    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized: invalid API key"}


@pytest.mark.parametrize("header", ["authorization", "x-api-key"])
def test_a_key_is_read_from_bearer_or_x_api_key(keyed: Keyed, header: str) -> None:
    secret = keyed.secrets["chat"]
    value = f"Bearer {secret}" if header == "authorization" else secret
    response = keyed.request("POST", "/api/chat", json=chat_body(), headers={header: value})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("key", "method", "path", "body", "admitted"),
    [
        ("chat", "POST", "/api/chat", chat_body(), ADMIT),
        ("chat", "POST", "/api/generate", {"model": MODEL, "prompt": "x", "stream": False}, ADMIT),
        ("chat", "POST", "/v1/chat/completions", chat_body(), ADMIT),
        ("chat", "POST", "/api/embed", {"model": MODEL, "input": "x"}, REFUSE),
        ("chat", "POST", "/api/copy", {"source": MODEL, "destination": "copy"}, REFUSE),
        ("chat", "GET", "/api/tags", None, ADMIT),
        ("chat", "GET", "/api/ps", None, ADMIT),
        ("chat", "POST", "/api/show", {"model": MODEL}, ADMIT),
        ("chat", "GET", "/metrics", None, REFUSE),
        ("embedder", "POST", "/api/embed", {"model": MODEL, "input": "x"}, ADMIT),
        ("embedder", "POST", "/v1/embeddings", {"model": MODEL, "input": "x"}, ADMIT),
        ("embedder", "POST", "/api/chat", chat_body(), REFUSE),
        ("chat-scripted", "POST", "/api/chat", chat_body(), ADMIT),
        ("chat-scripted", "POST", "/api/chat", chat_body("scripted:7b"), ADMIT),
        ("chat-other", "POST", "/api/chat", chat_body(), REFUSE),
        ("chat-other", "POST", "/v1/chat/completions", chat_body(), REFUSE),
        ("chat-other", "POST", "/api/show", {"model": MODEL}, REFUSE),
        ("chat-other", "POST", "/api/show", {"name": MODEL}, REFUSE),
        ("chat-other", "GET", f"/v1/models/{MODEL}", None, REFUSE),
        ("chat-scripted", "GET", f"/v1/models/{MODEL}", None, ADMIT),
        ("chat-other", "POST", "/api/chat", chat_body("other"), ADMIT),
        ("ops", "POST", "/api/copy", {"source": MODEL, "destination": "copy1"}, ADMIT),
        ("ops", "POST", "/api/copy", {"source": MODEL, "destination": "elsewhere"}, REFUSE),
        ("ops", "POST", "/api/chat", chat_body(), REFUSE),
        ("ops", "POST", "/api/create", {"model": "copy2", "from": MODEL, "stream": False}, ADMIT),
        ("ops", "POST", "/api/create", {"model": "copy2", "from": "secret"}, REFUSE),
        ("ops", "POST", "/api/create", {"model": "copy3", "modelfile": "FROM secret\n"}, REFUSE),
        ("ops", "DELETE", "/api/delete", {"model": "elsewhere"}, REFUSE),
        ("ops", "HEAD", "/api/blobs/sha256:" + "0" * 64, None, ADMIT),
        ("scraper", "GET", "/metrics", None, ADMIT),
        ("scraper", "GET", "/api/tags", None, ADMIT),
        ("scraper", "POST", "/api/chat", chat_body(), REFUSE),
        ("admin", "POST", "/api/chat", chat_body("elsewhere"), ADMIT),
        ("admin", "GET", "/metrics", None, ADMIT),
        ("admin", "GET", "/no/such/route", None, ADMIT),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_keys_are_admitted_and_refused_exactly_as_scoped(
    keyed: Keyed, key: str, method: str, path: str, body: Any, admitted: bool
) -> None:
    """Admitted: the route answered (200, or its own 404 for a model or route not there);
    refused: a 403 for the key's scope or models."""
    response = keyed.request(method, path, key, json=body) if body else None
    response = response or keyed.request(method, path, key)
    if admitted:
        assert response.status_code in (200, 404), response.text
    else:
        assert response.status_code == 403, response.text


def test_a_403_names_the_key_and_what_it_lacks(keyed: Keyed) -> None:
    scope = keyed.request("POST", "/api/embed", "chat", json={"model": MODEL, "input": "x"})
    assert scope.json() == {"error": "forbidden: API key 'chat' lacks the embed scope"}
    model = keyed.request("POST", "/api/chat", "chat-other", json=chat_body())
    assert model.json() == {"error": f"forbidden: API key 'chat-other' may not use model '{MODEL}'"}


@pytest.mark.parametrize(
    ("key", "visible"),
    [("chat", [MODEL]), ("chat-scripted", [MODEL]), ("chat-other", [])],
    ids=["unlimited", "matching", "other-models"],
)
def test_a_model_limited_key_lists_only_its_models(
    keyed: Keyed, key: str, visible: list[str]
) -> None:
    tags = keyed.request("GET", "/api/tags", key)
    assert [m["model"] for m in tags.json()["models"]] == visible
    assert int(tags.headers["content-length"]) == len(tags.content)
    v1 = keyed.request("GET", "/v1/models", key)
    assert [m["id"] for m in v1.json()["data"]] == visible
    keyed.request("POST", "/api/generate", "admin", json={"model": MODEL})  # load it
    ps = keyed.request("GET", "/api/ps", key)
    assert [m["model"] for m in ps.json()["models"]] == visible


def test_v1_refusals_are_openai_error_objects(keyed: Keyed) -> None:
    response = keyed.request("POST", "/v1/chat/completions", json=chat_body())
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    forbidden = keyed.request("POST", "/v1/chat/completions", "embedder", json=chat_body())
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["type"] == "permission_error"


def test_v1_messages_refusals_are_anthropic_errors(keyed: Keyed) -> None:
    body = {"model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]}
    response = keyed.request("POST", "/v1/messages", json=body)
    assert response.status_code == 401
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "authentication_error"
    forbidden = keyed.request("POST", "/v1/messages", "chat-other", json=body)
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["type"] == "permission_error"


def test_a_model_limited_key_still_streams(keyed: Keyed) -> None:
    """The body read for the model check is handed on: the stream arrives whole."""
    with httpx.stream(
        "POST",
        f"{keyed.server.url}/api/chat",
        json=chat_body(stream=True),
        headers={"Authorization": f"Bearer {keyed.secrets['chat-scripted']}"},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        parts = [json.loads(line) for line in response.iter_lines() if line]
    assert "".join(p["message"]["content"] for p in parts) == "Hello there"
    assert parts[-1]["done"] is True


def test_an_expired_key_is_refused(keyed: Keyed) -> None:
    now = datetime.now(UTC)
    hour = timedelta(hours=1)
    old, _ = keyed.keys.create("old", {Scope.ALL}, expires_in=hour, now=now - 2 * hour)
    fresh, _ = keyed.keys.create("fresh", {Scope.ALL}, expires_in=hour, now=now)
    assert keyed.request("GET", "/api/tags", fresh).status_code == 200
    response = keyed.request("GET", "/api/tags", old)
    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized: API key 'old' has expired"}


def test_create_and_revoke_take_effect_on_the_next_request(keyed: Keyed) -> None:
    secret, _ = keyed.keys.create("late", {Scope.GENERATE})
    assert keyed.request("POST", "/api/chat", secret, json=chat_body()).status_code == 200
    keyed.keys.revoke("late")
    assert keyed.request("POST", "/api/chat", secret, json=chat_body()).status_code == 401


def test_revoking_every_key_reopens_the_server_as_without_keys(keyed: Keyed) -> None:
    for name in ROLES:
        keyed.keys.revoke(name)
    assert keyed.request("GET", "/api/tags").status_code == 200


def test_a_broken_key_file_fails_closed(keyed: Keyed, caplog: pytest.LogCaptureFixture) -> None:
    keyed.keys.path.write_text("{ not json")
    with caplog.at_level(logging.ERROR):
        response = keyed.request("GET", "/api/tags", "admin")
    assert response.status_code == 401
    assert "refusing every key" in caplog.text


def test_the_app_slows_a_burst_of_failures_down(keyed: Keyed) -> None:
    """With the default budget (10 at once, then one per 2 s), a loop of wrong keys meets a
    429 within a few more attempts, however slow this machine is."""
    statuses: list[int] = []
    while len(statuses) < 30 and 429 not in statuses:
        response = keyed.request("GET", "/api/tags", "olk_wrong")
        statuses.append(response.status_code)
    assert statuses[-1] == 429 and len(statuses) > 10
    assert set(statuses[:-1]) == {401}
    assert int(response.headers["retry-after"]) >= 1
    assert keyed.request("GET", "/").status_code == 200


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def answer_ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def test_a_limited_address_is_refused_before_its_key_is_looked_at(tmp_path: Path) -> None:
    keys = KeyFile(tmp_path / "keys.json")
    secret, _ = keys.create("k", {Scope.ALL})
    clock = FakeClock()
    limiter = FailureLimiter(burst=3, rate=0.5, clock=clock)
    guard = KeyGuard(answer_ok, keys=KeySource(keys.path), limiter=limiter)

    def client(address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=guard, client=(address, 1234))
        return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1")

    def bearer(key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    async with client("10.0.0.1") as attacker, client("10.0.0.2") as neighbour:
        wrong = [(await attacker.get("/api/tags", headers=bearer("olk_x"))) for _ in range(4)]
        assert [r.status_code for r in wrong] == [401, 401, 401, 429]
        right = await attacker.get("/api/tags", headers=bearer(secret))
        assert right.status_code == 429 and right.headers["retry-after"] == "2"
        assert (await attacker.get("/")).status_code == 200
        assert (await neighbour.get("/api/tags", headers=bearer(secret))).status_code == 200
        clock.now = 2.0
        assert (await attacker.get("/api/tags", headers=bearer(secret))).status_code == 200


def test_keys_required_without_any_key_refuses_all_but_the_root(tmp_path: Path) -> None:
    config = Config(
        host=parse_host("127.0.0.1:1"), models_dir=tmp_path / "models", api_keys_required=True
    )
    from starlette.testclient import TestClient

    with TestClient(create_app(config), base_url="http://127.0.0.1") as client:
        assert client.get("/").status_code == 200
        assert client.get("/api/tags").status_code == 401


def test_every_route_of_the_app_has_a_rule() -> None:
    """A route missing from the table falls to `manage`; listing each keeps that on purpose."""
    app = create_app(Config(host=parse_host("127.0.0.1:1")))
    routes = [r for r in app.routes if isinstance(r, Route) and r.path != "/{path:path}"]
    for route in routes:
        concrete = re.sub(r"\{[^}]*\}", "x", route.path)
        methods = route.methods or {"GET"}
        if all(is_public(method, concrete) for method in methods):
            continue
        assert concrete in ROUTE_RULES or rule_for(concrete) != rule_for("/unlisted"), route.path


@pytest.mark.parametrize(
    ("body", "names"),
    [
        (b'{"model": "a", "name": "b"}', ["a", "b"]),
        (b'{"source": "a", "destination": "b"}', ["a", "b"]),
        (b'{"model": "a", "from": "b"}', ["a", "b"]),
        (b'{"model": "a", "modelfile": "FROM b\\nSYSTEM hi"}', ["a", "b"]),
        (b'{"model": "a", "modelfile": "FROM ./x.gguf"}', ["a"]),
        (b'{"model": 3}', []),
        (b"[1]", []),
        (b"not json", []),
    ],
    ids=[
        "model-and-name",
        "copy",
        "from",
        "modelfile-from",
        "modelfile-path",
        "not-a-string",
        "not-an-object",
        "not-json",
    ],
)
def test_body_models(body: bytes, names: list[str]) -> None:
    assert body_models(body) == names


def test_a_model_limited_key_still_cancels_when_its_client_leaves(tmp_path: Path) -> None:
    """After the replayed body, the client's disconnect still reaches the route, which stops
    the generation (a non-streamed answer is watched for that, `http.unless_client_leaves`)."""
    import asyncio

    from tests.scheduler.live import wait_until

    script = Script(hold=asyncio.Event())  # the model never writes: only leaving ends it
    for server in serve_scripted(tmp_path, script):
        secret, _ = KeyFile(tmp_path / "keys.json").create("limited", {Scope.GENERATE}, ["scr*"])
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                f"{server.url}/api/chat",
                json=chat_body(),
                headers={"Authorization": f"Bearer {secret}"},
                timeout=httpx.Timeout(1.0, connect=5.0),
            )
        assert wait_until(lambda: script.cancelled == 1, timeout=10)
