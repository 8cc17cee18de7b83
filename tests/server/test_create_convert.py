"""Creating a model from Safetensors pieces (today's `files` form) through a real server."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

from tests.convert.conftest import minilm_dir
from tests.server.conftest import LiveServer

pytestmark = pytest.mark.integration

__all__ = ["minilm_dir"]  # the session fixture, re-exported for this module


def upload_pieces(server: LiveServer, model_dir: Path) -> dict[str, str]:
    """POST every file of the directory as a blob; return the `files` map (relative names)."""
    files: dict[str, str] = {}
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        if path.suffix not in (".json", ".safetensors", ".txt"):
            continue
        data = path.read_bytes()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        response = httpx.post(f"{server.url}/api/blobs/{digest}", content=data, timeout=120)
        assert response.status_code in (200, 201)
        files[str(path.relative_to(model_dir))] = digest
    return files


def model_layer(server: LiveServer, name: str) -> str:
    shown = httpx.post(f"{server.url}/api/show", json={"model": name}).json()
    modelfile: str = shown["modelfile"]
    return next(line for line in modelfile.splitlines() if line.startswith("FROM "))


def test_same_pieces_convert_to_the_same_blob(live_server: LiveServer, minilm_dir: Path) -> None:
    files = upload_pieces(live_server, minilm_dir)
    for name in ("emb-a", "emb-b"):
        response = httpx.post(
            f"{live_server.url}/api/create",
            json={"model": name, "files": files, "stream": False},
            timeout=300,
        )
        assert response.status_code == 200, response.text
    assert model_layer(live_server, "emb-a") == model_layer(live_server, "emb-b")
    shown = httpx.post(f"{live_server.url}/api/show", json={"model": "emb-a"}).json()
    assert shown["capabilities"] == ["embedding"]
    assert shown["model_info"]["bert.context_length"] == 256
    leftovers = [p for p in (live_server.models_dir / "blobs").iterdir() if p.name.startswith(".")]
    assert leftovers == []
