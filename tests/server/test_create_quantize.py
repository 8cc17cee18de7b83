"""`/api/create` with `quantize`, through a real server and the real quantizer.

all-MiniLM-L6-v2 is imported from Safetensors (f16), then quantized as Ollama's docs show
(`from` an existing model, `quantize: q8_0`); the result must still embed like the
reference implementation.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import ollama
import pytest

from tests.conftest import TESTDATA, bundled_model_file
from tests.convert.conftest import minilm_dir
from tests.convert.reference import cosine
from tests.server.conftest import LiveServer, serve_with_model

pytestmark = pytest.mark.integration

__all__ = ["minilm_dir"]  # the session fixture, re-exported for this module

GOLDEN_FILE = TESTDATA / "minilm_golden.json"
Q8_MIN_COSINE = 0.998
"""Q8_0 against sentence-transformers' f32 vectors: 0.9991 at worst today. The f16 import
is held to 0.999 in test_embed_api.py; this bound says quantizing cost little on top."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> Iterator[LiveServer]:
    yield from serve_with_model(tmp_path_factory, "minilm-f16", f"FROM {minilm_dir}")


def create(server: LiveServer, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The streamed progress events of one create."""
    with httpx.stream("POST", f"{server.url}/api/create", json=body, timeout=300) as response:
        assert response.status_code == 200, response.read()
        return [json.loads(line) for line in response.iter_lines() if line]


def model_blobs(server: LiveServer) -> set[str]:
    """Digests of the model layers every manifest in the store names."""
    found = set()
    for manifest in (server.models_dir / "manifests").rglob("*"):
        if manifest.is_file():
            for layer in json.loads(manifest.read_text())["layers"]:
                if layer["mediaType"].endswith(".model"):
                    found.add(layer["digest"])
    return found


def level(server: LiveServer, name: str) -> str | None:
    details = server.client().show(name).details
    return details.quantization_level if details else None


def from_line(server: LiveServer, name: str) -> str:
    modelfile = server.client().show(name).modelfile or ""
    return next(line for line in modelfile.splitlines() if line.startswith("FROM "))


def blob_files(server: LiveServer) -> set[str]:
    return {p.name.replace("-", ":") for p in (server.models_dir / "blobs").iterdir()}


def test_quantize_from_an_existing_model_streams_ollamas_progress(server: LiveServer) -> None:
    events = create(server, {"model": "minilm-q8", "from": "minilm-f16", "quantize": "q8_0"})
    statuses = [e["status"] for e in events]
    quantizing = [e for e in events if e["status"] == "quantizing F16 model to Q8_0"]
    assert quantizing and all(e["digest"] == "0" for e in quantizing)
    total = quantizing[0]["total"]
    assert total > 40_000_000 and quantizing[-1]["completed"] == total
    assert [e["completed"] for e in quantizing] == sorted(e["completed"] for e in quantizing)
    after = statuses[statuses.index("verifying conversion") :]
    assert after[1].startswith("creating new layer sha256:")
    assert after[-2:] == ["writing manifest", "success"]
    assert level(server, "minilm-q8") == "Q8_0"
    shown = server.client().show("minilm-q8")
    assert shown.modelinfo is not None and shown.modelinfo["general.file_type"] == 7
    assert level(server, "minilm-f16") == "F16"


def test_quantized_model_still_embeds_like_the_reference(server: LiveServer) -> None:
    create(server, {"model": "minilm-q8", "from": "minilm-f16", "quantize": "Q8_0"})
    golden = json.loads(GOLDEN_FILE.read_text())
    client = ollama.Client(host=server.url, timeout=120)
    vectors = {}
    for key in ("sentences", "queries"):
        texts = [item["text"] for item in golden[key]]
        got = np.array(client.embed(model="minilm-q8", input=texts).embeddings, dtype=np.float64)
        for text, g, item in zip(texts, got, golden[key], strict=True):
            assert cosine(g, np.array(item["embedding"])) >= Q8_MIN_COSINE, text[:60]
        vectors[key] = got
    nearest = (vectors["queries"] @ vectors["sentences"].T).argmax(axis=1)
    assert nearest.tolist() == [item["nearest"] for item in golden["queries"]]


def test_q4_k_m_from_a_modelfile_keeps_only_the_quantized_blob(
    server: LiveServer, minilm_dir: Path
) -> None:
    before = blob_files(server)
    events = create(
        server, {"model": "minilm-q4", "modelfile": f"FROM {minilm_dir}", "quantize": "q4_K_M"}
    )
    assert events[-1] == {"status": "success"}
    assert level(server, "minilm-q4") == "Q4_K_M"
    new_blobs = blob_files(server) - before
    new_models = new_blobs & model_blobs(server)
    assert len(new_models) == 1  # the converted f16 it was made from is gone
    assert not [p for p in (server.models_dir / "blobs").iterdir() if p.name.startswith(".")]


def test_same_type_as_the_source_is_a_plain_copy(server: LiveServer) -> None:
    events = create(server, {"model": "minilm-same", "from": "minilm-f16", "quantize": "f16"})
    assert not any(e["status"].startswith("quantizing") for e in events)
    assert from_line(server, "minilm-same") == from_line(server, "minilm-f16")
    assert level(server, "minilm-same") == "F16"


def test_unsupported_type_is_a_400_before_anything_is_written(server: LiveServer) -> None:
    before = blob_files(server)
    response = httpx.post(
        f"{server.url}/api/create",
        json={"model": "nope", "from": "minilm-f16", "quantize": "q3_K_L"},
        timeout=60,
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": "unsupported quantization type q3_K_L - supported types are "
        "F32, F16, Q8_0, Q4_K_S, Q4_K_M"
    }
    assert blob_files(server) == before


def test_an_already_quantized_model_cannot_be_quantized(server: LiveServer) -> None:
    before = blob_files(server)
    smollm2 = bundled_model_file("smollm2")
    events = create(
        server, {"model": "small-q8", "modelfile": f"FROM {smollm2}", "quantize": "q8_0"}
    )
    assert events[-1] == {"error": "quantization is only supported for F16 and F32 models"}
    with pytest.raises(ollama.ResponseError):
        server.client().show("small-q8")
    assert blob_files(server) == before
