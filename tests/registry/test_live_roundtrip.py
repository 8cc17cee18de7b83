"""The whole story through a real ollamapy server and the real `docker-registry`:
create SmolLM2 → push → delete locally → pull → the same manifest digest, byte-identical
blobs, and the pulled model generates."""

from __future__ import annotations

import base64
import filecmp
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ollamapy.config import Config, parse_host
from ollamapy.store import Store
from ollamapy.types import ModelName
from tests.conftest import bundled_model_file
from tests.registry.servers import Registry, free_port
from tests.scheduler.live import CHATML, LiveApp, serve_app

pytestmark = pytest.mark.integration


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveApp]:
    config = Config(
        host=parse_host(f"127.0.0.1:{free_port()}"),
        models_dir=tmp_path / "models",
        context_length=2048,
    )
    yield from serve_app(config)


def _post(url: str, path: str, body: dict[str, Any], timeout: float = 300) -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, timeout=timeout)


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return "sha256:" + hashlib.file_digest(handle, "sha256").hexdigest()


def test_create_push_delete_pull_generate(registry: Registry, live: LiveApp) -> None:
    name = f"{registry.host}/library/smol:latest"
    modelfile = f"FROM {bundled_model_file('smollm2')}\n{CHATML}"
    created = _post(live.url, "/api/create", {"model": name, "modelfile": modelfile})
    assert created.status_code == 200, created.text
    store = Store(live.app.state.ollama.config.models_dir)
    model = ModelName.parse(name)
    manifest_bytes = store.read_manifest_bytes(model)
    manifest = store.read_manifest(model)
    before = {str(d): _sha256(store.blob_path(d)) for d in manifest.digests}
    assert all(digest == actual for digest, actual in before.items())

    pushed = _post(live.url, "/api/push", {"model": name, "insecure": True, "stream": False})
    assert pushed.json() == {"status": "success"}, pushed.text
    listed = httpx.get(f"{live.url}/api/tags", timeout=30).json()["models"]
    local_digest = next(m["digest"] for m in listed if m["name"] == name)
    for digest in before:  # the registry holds exactly our bytes
        assert _sha256(registry.blob_path(digest)) == digest

    deleted = httpx.request("DELETE", f"{live.url}/api/delete", json={"model": name}, timeout=30)
    assert deleted.status_code == 200, deleted.text
    assert not any(store.has_blob(d) for d in manifest.digests)
    assert name not in [m["name"] for m in httpx.get(f"{live.url}/api/tags").json()["models"]]

    with httpx.stream(
        "POST", f"{live.url}/api/pull", json={"model": name, "insecure": True}, timeout=300
    ) as response:
        events = [json.loads(line) for line in response.iter_lines() if line.strip()]
    assert events[0] == {"status": "pulling manifest"}
    assert events[-1] == {"status": "success"}, events[-3:]
    weights = manifest.layers[0]
    progress = [e for e in events if e.get("digest") == str(weights.digest)]
    assert progress[-1]["completed"] == progress[-1]["total"] == weights.size

    assert store.read_manifest_bytes(model) == manifest_bytes  # same manifest digest
    listed = httpx.get(f"{live.url}/api/tags", timeout=30).json()["models"]
    assert next(m["digest"] for m in listed if m["name"] == name) == local_digest
    assert local_digest == hashlib.sha256(manifest_bytes).hexdigest()
    for layer_digest in manifest.digests:
        pulled = store.blob_path(layer_digest)
        assert filecmp.cmp(pulled, registry.blob_path(str(layer_digest)), shallow=False)
        assert _sha256(pulled) == str(layer_digest)
    assert not list(store.blobs_dir.glob("*partial*"))

    generated = _post(
        live.url,
        "/api/generate",
        {
            "model": name,
            "prompt": "Count from one to ten: one, two,",
            "stream": False,
            "options": {"num_predict": 3, "temperature": 0, "seed": 1},
        },
    )
    assert generated.status_code == 200, generated.text
    result = generated.json()
    assert result["done"] is True
    assert result["eval_count"] == 3
    assert result["response"].strip()


def test_a_vision_model_pushes_and_pulls_with_its_projector(
    registry: Registry, live: LiveApp
) -> None:
    """The projector layer travels like any other: pulled back, the model sees images."""
    vision = Path(__file__).resolve().parents[1] / "testdata" / "vision"
    name = f"{registry.host}/library/tiny-vision:latest"
    modelfile = f"FROM {vision / 'gemma3.gguf'}\nFROM {vision / 'gemma3-mmproj.gguf'}\n"
    created = _post(live.url, "/api/create", {"model": name, "modelfile": modelfile})
    assert created.status_code == 200, created.text
    store = Store(live.app.state.ollama.config.models_dir)
    manifest = store.read_manifest(ModelName.parse(name))
    projector = "application/vnd.ollama.image.projector"
    assert [layer.media_type for layer in manifest.layers].count(projector) == 1
    pushed = _post(live.url, "/api/push", {"model": name, "insecure": True, "stream": False})
    assert pushed.json() == {"status": "success"}, pushed.text
    deleted = httpx.request("DELETE", f"{live.url}/api/delete", json={"model": name}, timeout=30)
    assert deleted.status_code == 200, deleted.text
    pulled = _post(live.url, "/api/pull", {"model": name, "insecure": True, "stream": False})
    assert pulled.json() == {"status": "success"}, pulled.text
    assert store.read_manifest(ModelName.parse(name)) == manifest
    image = base64.b64encode((vision / "gradient.png").read_bytes()).decode()
    body = {"model": name, "prompt": "Hi", "images": [image], "stream": False}
    generated = _post(live.url, "/api/generate", body | {"options": {"num_predict": 1}})
    assert generated.status_code == 200, generated.text
    assert generated.json()["prompt_eval_count"] > 256
