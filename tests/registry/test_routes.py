"""`/api/pull` and `/api/push` served by uvicorn, driven by httpx and the official client.

The app here is a bare Starlette app with only the transfer routes and the project's
error handlers (the lead wires `transfer.ROUTES` into the real app).
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from typing import Any, cast

import httpx
import ollama
import pytest
from click.testing import CliRunner
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from ollamapy.api.client import Client
from ollamapy.cli.commands import Deps
from ollamapy.cli.main import cli
from ollamapy.config import Config
from ollamapy.errors import ModelNotFoundError, OllamaError
from ollamapy.server import transfer
from ollamapy.server.http import handle_errors
from ollamapy.server.state import ServerState
from ollamapy.store import Store
from tests.cli.cli_fakes import terminal
from tests.registry.conftest import make_model
from tests.registry.servers import Proxy, free_port, serve_app


@pytest.fixture
def app_store() -> Store:
    return Store(Config.from_env().models_dir)


HEARTBEAT = Route("/", lambda request: PlainTextResponse("Ollama is running"), methods=["HEAD"])
"""`HEAD /`, which the CLI sends before any command."""


@pytest.fixture
def server(app_store: Store) -> Iterator[str]:
    app = Starlette(
        routes=[*transfer.ROUTES, HEARTBEAT],
        exception_handlers={OllamaError: handle_errors, Exception: handle_errors},
    )
    app.state.ollama = ServerState(Config.from_env(), app_store, cast(Any, None))
    with serve_app(app, free_port()) as url:
        yield url


def _lines(response: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def test_push_and_pull_with_the_official_client(
    server: str, proxy: Proxy, app_store: Store
) -> None:
    name, manifest = make_model(app_store, f"{proxy.host}/me/routes:v1")
    client = ollama.Client(host=server)
    pushed = list(client.push(str(name), insecure=True, stream=True))
    assert pushed[0].status == "retrieving manifest"
    assert pushed[-1].status == "success"
    original = app_store.read_manifest_bytes(name)
    app_store.delete(name)
    assert not any(app_store.has_blob(d) for d in manifest.digests)

    pulled = list(client.pull(str(name), insecure=True, stream=True))

    assert pulled[0].status == "pulling manifest"
    assert [p.status for p in pulled[-3:]] == [
        "verifying sha256 digest",
        "writing manifest",
        "success",
    ]
    model = manifest.layers[0]
    progress = [p for p in pulled if p.digest == str(model.digest)]
    assert progress[-1].completed == progress[-1].total == model.size
    assert app_store.read_manifest_bytes(name) == original


def test_stream_false_returns_last_event_and_legacy_name(
    server: str, proxy: Proxy, app_store: Store
) -> None:
    name, _ = make_model(app_store, f"{proxy.host}/me/quiet:v1")
    response = httpx.post(
        f"{server}/api/push", json={"name": str(name), "insecure": True, "stream": False}
    )
    assert response.status_code == 200
    assert response.json() == {"status": "success"}


def test_unknown_model_errors(server: str, proxy: Proxy) -> None:
    body = {"model": f"{proxy.host}/me/missing:v1", "insecure": True}
    quiet = httpx.post(f"{server}/api/pull", json={**body, "stream": False})
    assert quiet.status_code == 404
    assert quiet.json() == {"error": "pull model manifest: file does not exist"}

    streamed = httpx.post(f"{server}/api/pull", json=body)
    assert streamed.status_code == 200
    assert _lines(streamed) == [
        {"status": "pulling manifest"},
        {"error": "pull model manifest: file does not exist"},
    ]


def test_bad_requests_are_http_errors(server: str) -> None:
    bad_name = httpx.post(f"{server}/api/pull", json={"model": "a/b/c/d/e"})
    assert bad_name.status_code == 400
    assert "invalid model name" in bad_name.json()["error"]
    insecure = httpx.post(f"{server}/api/pull", json={"model": "http://example.invalid/a/b"})
    assert insecure.status_code == 400
    assert insecure.json() == {"error": "insecure protocol http"}
    missing = httpx.post(
        f"{server}/api/push", json={"model": "127.0.0.1:9/me/none", "stream": False}
    )
    assert missing.status_code == 404
    assert missing.json()["error"] == str(ModelNotFoundError("127.0.0.1:9/me/none:latest"))


def test_client_disconnect_cancels_and_the_next_pull_resumes(
    server: str, proxy: Proxy, app_store: Store
) -> None:
    name, manifest = make_model(app_store, f"{proxy.host}/me/cancel:v1")
    httpx.post(f"{server}/api/push", json={"model": str(name), "insecure": True, "stream": False})
    original = app_store.read_manifest_bytes(name)
    app_store.delete(name)
    model = manifest.layers[0]
    proxy.script.slow_blobs = 0.02
    proxy.script.log.clear()

    body = {"model": str(name), "insecure": True}
    with httpx.stream("POST", f"{server}/api/pull", json=body, timeout=30) as response:
        for line in response.iter_lines():
            event = json.loads(line)
            if event.get("digest") == str(model.digest) and event.get("completed", 0) > 50_000:
                break  # leaving the block closes the connection mid-download

    record = app_store.partial_path(model.digest, "-0")
    deadline = time.monotonic() + 10
    while not (record.exists() and json.loads(record.read_text())["Completed"] > 0):
        assert time.monotonic() < deadline, "no resume record after the disconnect"
        time.sleep(0.05)
    time.sleep(0.3)
    assert not app_store.list_models()
    gets_before = len(proxy.script.blob_gets())
    time.sleep(0.3)
    assert len(proxy.script.blob_gets()) == gets_before  # the download really stopped
    saved = json.loads(record.read_text())["Completed"]

    proxy.script.slow_blobs = 0
    proxy.script.log.clear()
    done = httpx.post(f"{server}/api/pull", json={**body, "stream": False}, timeout=30)

    assert done.json() == {"status": "success"}
    model_gets = [r for r in proxy.script.blob_gets() if r.path.endswith(str(model.digest))]
    assert model_gets[0].headers["range"].startswith(f"bytes={saved}-")
    assert app_store.read_manifest_bytes(name) == original
    assert app_store.has_blob(model.digest)


# --------------------------------------------------------------------- unreachable registries


def _refused(port: int) -> str:
    return f"pull model manifest: could not connect to 127.0.0.1:{port}: connection refused"


def test_pull_from_a_closed_port_is_told_plainly(server: str) -> None:
    port = free_port()  # nothing listens there
    body = {"model": f"127.0.0.1:{port}/me/none:v1", "insecure": True}

    quiet = httpx.post(f"{server}/api/pull", json={**body, "stream": False}, timeout=30)
    assert quiet.status_code == 500
    assert quiet.json() == {"error": _refused(port)}

    streamed = httpx.post(f"{server}/api/pull", json=body, timeout=30)
    assert streamed.status_code == 200
    assert _lines(streamed) == [{"status": "pulling manifest"}, {"error": _refused(port)}]


def test_pull_over_https_from_a_plain_http_server_says_use_insecure(
    server: str, plain_http: str
) -> None:
    """Without `insecure` the pull speaks https to a server that answers in plain http."""
    body = {"model": f"{plain_http}/me/none:v1", "stream": False}
    response = httpx.post(f"{server}/api/pull", json=body, timeout=30)
    assert response.status_code == 500
    message = response.json()["error"]
    assert message.startswith(
        f"pull model manifest: could not connect to {plain_http} over https: "
        "it answers in plain http"
    )
    assert "use --insecure (`insecure: true` in the API)" in message
    assert "SSL" not in message and "_ssl.c" not in message


def test_the_cli_prints_the_plain_message(server: str) -> None:
    port = free_port()
    term = terminal()
    deps = Deps(make_client=lambda: Client(server), terminal=term)
    result = CliRunner().invoke(
        cli, ["pull", "--insecure", f"127.0.0.1:{port}/me/none:v1"], obj=deps
    )
    assert result.exit_code == 1
    assert isinstance(term.err, io.StringIO)
    assert (term.err.getvalue() + result.stderr).endswith(f"Error: {_refused(port)}\n")
