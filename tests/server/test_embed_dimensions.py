"""`dimensions` on /api/embed and /v1/embeddings, with the scripted runner (whose raw vector
for a text is [its length, 1, 2]): cut, then L2-normalised, as Ollama does; a width at or
above the model's is the whole vector (Ollama's rule, not an error); a negative one a 400."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes import MODEL, Script, ScriptedServer, serve_scripted


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScriptedServer]:
    yield from serve_scripted(tmp_path_factory.mktemp("dimensions"), Script())


def unit(values: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in values))
    return [v / norm for v in values]


def embed(server: ScriptedServer, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json={"model": MODEL, **body}, timeout=30)


@pytest.mark.parametrize(
    ("dimensions", "expected"),
    [(1, [1.0]), (2, unit([4.0, 1.0])), (3, unit([4.0, 1.0, 2.0])), (8, unit([4.0, 1.0, 2.0]))],
    ids=["one", "cut", "whole-width", "wider-than-the-model"],
)
def test_native_dimensions_cut_then_normalise(
    server: ScriptedServer, dimensions: int, expected: list[float]
) -> None:
    response = embed(server, "/api/embed", {"input": "text", "dimensions": dimensions})
    assert response.status_code == 200, response.text
    (vector,) = response.json()["embeddings"]
    assert vector == pytest.approx(expected, abs=1e-6)


def test_openai_dimensions_cut_then_normalise(server: ScriptedServer) -> None:
    body = {"input": "text", "dimensions": 2, "encoding_format": "float"}
    response = embed(server, "/v1/embeddings", body)
    assert response.status_code == 200, response.text
    assert response.json()["data"][0]["embedding"] == pytest.approx(unit([4.0, 1.0]), abs=1e-6)


def test_negative_dimensions_are_a_400(server: ScriptedServer) -> None:
    native = embed(server, "/api/embed", {"input": "text", "dimensions": -1})
    assert native.status_code == 400
    assert native.json() == {"error": "dimensions must be a positive number"}
    openai = embed(server, "/v1/embeddings", {"input": "text", "dimensions": -1})
    assert openai.status_code == 400
    assert "dimensions" in openai.json()["error"]["message"]
