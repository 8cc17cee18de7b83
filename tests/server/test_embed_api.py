"""Embeddings through a real server, the real runner and all-MiniLM-L6-v2 imported from
its Safetensors directory with `/api/create`."""

from __future__ import annotations

import base64
import json
import math
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import ollama
import pytest

from tests.conftest import TESTDATA, bundled_model_file
from tests.convert.conftest import minilm_dir
from tests.convert.reference import ReferenceBert, ReferenceTokenizer, cosine
from tests.server.conftest import (
    SMOLLM2_MODELFILE,
    LiveServer,
    serve_with_model,
)

pytestmark = pytest.mark.integration

__all__ = ["minilm_dir"]  # the session fixture, re-exported for this module

MODEL = "all-minilm"
SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "A man is riding a horse.",
]
LONG_TEXT = " ".join(["Sentence embeddings compress meaning into vectors."] * 60)
GOLDEN_FILE = TESTDATA / "minilm_golden.json"
"""sentence-transformers' own vectors (see scripts/make_minilm_golden.py)."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> Iterator[LiveServer]:
    """One server for the module, with all-MiniLM created from its Safetensors directory."""
    yield from serve_with_model(tmp_path_factory, MODEL, f"FROM {minilm_dir}")


@pytest.fixture
def client(server: LiveServer) -> ollama.Client:
    return ollama.Client(host=server.url, timeout=120)


def _norm(vector: list[float]) -> float:
    return math.sqrt(sum(x * x for x in vector))


def test_embed_batch_is_unit_norm_and_carries_meaning(client: ollama.Client) -> None:
    result = client.embed(model=MODEL, input=SENTENCES)
    vectors = [list(v) for v in result.embeddings]
    assert len(vectors) == 3 and all(len(v) == 384 for v in vectors)
    assert all(abs(_norm(v) - 1.0) < 1e-4 for v in vectors)
    food, bread, horse = (np.array(v) for v in vectors)
    assert cosine(food, bread) > cosine(food, horse) + 0.2
    assert result.prompt_eval_count and result.prompt_eval_count > 3 * 3
    assert result.total_duration and result.total_duration > 0


def test_embed_matches_numpy_reference(client: ollama.Client, minilm_dir: Path) -> None:
    text = "This is an example sentence."
    ids = ReferenceTokenizer.from_dir(minilm_dir).encode(text, 256)
    want = ReferenceBert(minilm_dir).embed(ids)
    got = np.array(client.embed(model=MODEL, input=text).embeddings[0])
    assert cosine(got, want) >= 0.999


def test_batch_equals_single(client: ollama.Client) -> None:
    together = client.embed(model=MODEL, input=SENTENCES).embeddings
    for text, vector in zip(SENTENCES, together, strict=True):
        alone = client.embed(model=MODEL, input=text).embeddings[0]
        assert cosine(np.array(alone), np.array(vector)) > 0.9999


def test_legacy_embeddings_are_unnormalised(client: ollama.Client) -> None:
    vector = list(client.embeddings(model=MODEL, prompt=SENTENCES[0]).embedding)
    assert len(vector) == 384
    assert abs(_norm(vector) - 1.0) > 1e-3
    unit = client.embed(model=MODEL, input=SENTENCES[0]).embeddings[0]
    assert cosine(np.array(vector), np.array(unit)) > 0.9999


def test_truncate_false_rejects_long_input(server: LiveServer, client: ollama.Client) -> None:
    response = httpx.post(
        f"{server.url}/api/embed",
        json={"model": MODEL, "input": LONG_TEXT, "truncate": False},
        timeout=60,
    )
    assert response.status_code == 400
    assert "context length" in response.json()["error"]
    truncated = client.embed(model=MODEL, input=LONG_TEXT)
    assert truncated.prompt_eval_count == 256


def test_dimensions_cuts_and_renormalises(server: LiveServer) -> None:
    response = httpx.post(
        f"{server.url}/api/embed",
        json={"model": MODEL, "input": ["hello world"], "dimensions": 64},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    (vector,) = response.json()["embeddings"]
    assert len(vector) == 64 and abs(_norm(vector) - 1.0) < 1e-4


def test_empty_input_loads_the_model(server: LiveServer) -> None:
    response = httpx.post(f"{server.url}/api/embed", json={"model": MODEL}, timeout=60)
    assert response.status_code == 200, response.text
    assert response.json() == {"model": MODEL, "embeddings": []}


def test_openai_embeddings(server: LiveServer) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="ollama")
    result = client.embeddings.create(model=MODEL, input=SENTENCES[:2])
    assert len(result.data) == 2 and len(result.data[0].embedding) == 384
    assert abs(_norm(result.data[0].embedding) - 1.0) < 1e-4


def test_token_ids_are_refused_on_a_loaded_model_and_it_still_embeds(server: LiveServer) -> None:
    """Ollama's /api/embed and /v1/embeddings take text only (see test_embed_input.py)."""
    for ids in ([1, 2], [[1, 2]]):
        native = httpx.post(
            f"{server.url}/api/embed", json={"model": MODEL, "input": ids}, timeout=60
        )
        assert (native.status_code, native.json()) == (400, {"error": "invalid input type"})
        openai = httpx.post(
            f"{server.url}/v1/embeddings", json={"model": MODEL, "input": ids}, timeout=60
        )
        assert openai.status_code == 400
        assert openai.json()["error"]["message"] == "invalid input type"
    after = httpx.post(f"{server.url}/api/embed", json={"model": MODEL, "input": "hi"}, timeout=60)
    assert after.status_code == 200 and len(after.json()["embeddings"][0]) == 384


def test_show_lists_embedding_capability(client: ollama.Client) -> None:
    assert "embedding" in (client.show(MODEL).capabilities or [])


def test_generate_is_refused(server: LiveServer) -> None:
    response = httpx.post(
        f"{server.url}/api/generate", json={"model": MODEL, "prompt": "hi"}, timeout=60
    )
    assert response.status_code == 400
    assert "does not support generate" in response.json()["error"]


@pytest.mark.parametrize(
    ("route", "body"),
    [("/api/generate", {}), ("/api/chat", {"messages": []})],
    ids=["generate", "chat"],
)
def test_keep_alive_zero_unloads_an_embedding_model(
    server: LiveServer, client: ollama.Client, route: str, body: dict[str, Any]
) -> None:
    client.embed(model=MODEL, input="load it")
    assert [m.model for m in client.ps().models] == [f"{MODEL}:latest"]
    response = httpx.post(
        f"{server.url}{route}", json={"model": MODEL, "keep_alive": 0, **body}, timeout=60
    )
    assert response.status_code == 200, response.text
    assert response.json()["done_reason"] == "unload"
    assert client.ps().models == []


def test_ollama_stop_unloads_an_embedding_model(server: LiveServer, client: ollama.Client) -> None:
    client.embed(model=MODEL, input="load it")
    stopped = subprocess.run(
        [sys.executable, "-m", "ollamapy", "stop", MODEL],
        env={**os.environ, "OLLAMA_HOST": server.url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert stopped.returncode == 0, stopped.stderr
    assert client.ps().models == []


# --------------------------------------------------------------- against sentence-transformers


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(GOLDEN_FILE.read_text())
    return data


def _texts(golden: dict[str, Any], key: str) -> list[str]:
    return [item["text"] for item in golden[key]]


def _matrix(vectors: Any) -> np.ndarray[Any, np.dtype[np.float64]]:
    return np.array([list(v) for v in vectors], dtype=np.float64)


def _assert_matches_golden(got: np.ndarray[Any, Any], golden: dict[str, Any], key: str) -> None:
    want = _matrix(item["embedding"] for item in golden[key])
    assert got.shape == want.shape
    for text, g, w in zip(_texts(golden, key), got, want, strict=True):
        assert cosine(g, w) >= 0.999, text[:60]


def test_embed_matches_sentence_transformers(client: ollama.Client, golden: dict[str, Any]) -> None:
    assert any(item["tokens"] > 256 for item in golden["sentences"])  # truncation is covered
    got = _matrix(client.embed(model=MODEL, input=_texts(golden, "sentences")).embeddings)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4)
    _assert_matches_golden(got, golden, "sentences")


def test_nearest_neighbours_match_sentence_transformers(
    client: ollama.Client, golden: dict[str, Any]
) -> None:
    sentences = _matrix(client.embed(model=MODEL, input=_texts(golden, "sentences")).embeddings)
    queries = _matrix(client.embed(model=MODEL, input=_texts(golden, "queries")).embeddings)
    _assert_matches_golden(queries, golden, "queries")
    nearest = (queries @ sentences.T).argmax(axis=1)
    assert nearest.tolist() == [item["nearest"] for item in golden["queries"]]


def test_batch_of_one_equals_batch_of_32(client: ollama.Client, golden: dict[str, Any]) -> None:
    texts = _texts(golden, "sentences")
    batch = [texts[i % len(texts)] for i in range(32)]
    together = _matrix(client.embed(model=MODEL, input=batch).embeddings)
    alone = {t: np.array(client.embed(model=MODEL, input=[t]).embeddings[0]) for t in texts}
    for text, vector in zip(batch, together, strict=True):
        assert cosine(alone[text], vector) >= 0.99999, text[:60]


def test_legacy_embeddings_match_sentence_transformers(
    client: ollama.Client, golden: dict[str, Any]
) -> None:
    for item in golden["sentences"][:4]:
        vector = np.array(list(client.embeddings(model=MODEL, prompt=item["text"]).embedding))
        assert cosine(vector, np.array(item["embedding"])) >= 0.999


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_openai_embeddings_match_sentence_transformers(
    server: LiveServer, golden: dict[str, Any], encoding: str
) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="ollama")
    texts = _texts(golden, "sentences")
    result = client.embeddings.create(model=MODEL, input=texts, encoding_format=encoding)
    assert [d.index for d in result.data] == list(range(len(texts)))
    vectors: list[np.ndarray[Any, Any]] = []
    for item in result.data:
        if encoding == "base64":
            assert isinstance(item.embedding, str)
            raw = np.frombuffer(base64.b64decode(item.embedding), dtype="<f4")
            vectors.append(raw.astype(np.float64))
        else:
            vectors.append(np.array(item.embedding, dtype=np.float64))
    assert all(v.shape == (384,) for v in vectors)
    _assert_matches_golden(np.stack(vectors), golden, "sentences")
    assert result.usage.prompt_tokens > len(texts)


# ------------------------------------------------------------------ generative models embed too

SMOL = "smollm2:135m"
SMOL_GREEDY = {"temperature": 0, "num_predict": 16, "seed": 1}


@pytest.fixture(scope="module")
def smol_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    modelfile = f"FROM {bundled_model_file('smollm2')}\n{SMOLLM2_MODELFILE}"
    yield from serve_with_model(tmp_path_factory, SMOL, modelfile)


def _smol_generate(url: str, prompt: str) -> str:
    response = httpx.post(
        f"{url}/api/generate",
        json={"model": SMOL, "prompt": prompt, "stream": False, "options": SMOL_GREEDY},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    text: str = response.json()["response"]
    return text


def _smol_embed(url: str, texts: list[str]) -> np.ndarray[Any, np.dtype[np.float64]]:
    response = httpx.post(f"{url}/api/embed", json={"model": SMOL, "input": texts}, timeout=120)
    assert response.status_code == 200, response.text
    return _matrix(response.json()["embeddings"])


def test_generative_model_embeds_without_disturbing_generation(smol_server: LiveServer) -> None:
    url = smol_server.url
    before = _smol_generate(url, "Name three colors.")
    assert before
    first = _smol_embed(url, SENTENCES)
    second = _smol_embed(url, SENTENCES)
    assert first.shape == (3, 576)
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-4)
    assert np.allclose(first, second, atol=1e-5)
    alone = _smol_embed(url, [SENTENCES[2]])[0]
    assert cosine(alone, first[2]) >= 0.9999
    assert _smol_generate(url, "Name three colors.") == before
    models = httpx.get(f"{url}/api/ps", timeout=30).json()["models"]
    assert [m["name"] for m in models] == [SMOL]  # the same runner did both


def test_generative_model_embeds_while_generating(smol_server: LiveServer) -> None:
    url = smol_server.url
    expected = _smol_generate(url, "Write a haiku about rivers.")
    got: list[str] = []
    worker = threading.Thread(
        target=lambda: got.append(_smol_generate(url, "Write a haiku about rivers."))
    )
    worker.start()
    vectors = [_smol_embed(url, SENTENCES) for _ in range(3)]
    worker.join(timeout=120)
    assert got == [expected]
    assert all(np.allclose(v, vectors[0], atol=1e-5) for v in vectors)
    legacy = httpx.post(
        f"{url}/api/embeddings", json={"model": SMOL, "prompt": SENTENCES[0]}, timeout=60
    ).json()["embedding"]
    assert len(legacy) == 576 and cosine(np.array(legacy), vectors[0][0]) >= 0.9999


def test_generative_model_truncates_long_inputs(smol_server: LiveServer) -> None:
    text = " ".join(["Sentence embeddings compress meaning into vectors."] * 400)
    url = f"{smol_server.url}/api/embed"
    refused = httpx.post(url, json={"model": SMOL, "input": text, "truncate": False}, timeout=120)
    assert refused.status_code == 400 and "context length" in refused.json()["error"]
    response = httpx.post(url, json={"model": SMOL, "input": [text, "hi"]}, timeout=120)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [len(v) for v in body["embeddings"]] == [576, 576]
    assert 2048 < body["prompt_eval_count"] <= 2048 + 8
