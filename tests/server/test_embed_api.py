"""Embeddings through a real server, the real runner and all-MiniLM-L6-v2 imported from
its Safetensors directory with `/api/create`."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import ollama
import pytest

from ollamapy.config import Config, parse_host
from tests.convert.conftest import minilm_dir
from tests.convert.reference import ReferenceBert, ReferenceTokenizer, cosine
from tests.server.conftest import LiveServer, free_port, serve

pytestmark = pytest.mark.integration

__all__ = ["minilm_dir"]  # the session fixture, re-exported for this module

MODEL = "all-minilm"
SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "A man is riding a horse.",
]
LONG_TEXT = " ".join(["Sentence embeddings compress meaning into vectors."] * 60)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> Iterator[LiveServer]:
    """One server for the module, with all-MiniLM created from its Safetensors directory."""
    models = tmp_path_factory.mktemp("models")
    config = Config(host=parse_host(f"127.0.0.1:{free_port()}"), models_dir=models)
    for live in serve(config):
        response = httpx.post(
            f"{live.url}/api/create",
            json={"model": MODEL, "modelfile": f"FROM {minilm_dir}", "stream": False},
            timeout=300,
        )
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "success"
        yield live


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


def test_show_lists_embedding_capability(client: ollama.Client) -> None:
    assert "embedding" in (client.show(MODEL).capabilities or [])


def test_generate_is_refused(server: LiveServer) -> None:
    response = httpx.post(
        f"{server.url}/api/generate", json={"model": MODEL, "prompt": "hi"}, timeout=60
    )
    assert response.status_code == 400
    assert "does not support generate" in response.json()["error"]
