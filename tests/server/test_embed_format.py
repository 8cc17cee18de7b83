"""`/api/embed`'s vector maths and JSON writing, without a server."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ollamapy.errors import RunnerError
from ollamapy.server.embed import check_finite, normalize, shape_vectors
from ollamapy.server.http import json_body


def test_normalize_rows_and_keep_zero_rows() -> None:
    got = normalize(np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float32))
    assert got.dtype == np.float32
    assert got.tolist() == [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]


def test_shape_vectors_cuts_then_normalises() -> None:
    matrix = np.array([[3.0, 4.0, 12.0]], dtype=np.float32)
    assert shape_vectors(matrix, 2).tolist() == normalize([[3.0, 4.0]]).tolist()
    for dimensions in (None, 0, 3, 10):
        assert shape_vectors(matrix, dimensions).shape == (1, 3)


def test_json_body_round_trips_float32_exactly_in_shortest_form() -> None:
    rng = np.random.default_rng(7)
    matrix = (rng.standard_normal((5, 384)) * np.logspace(-12, 12, 384)).astype(np.float32)
    matrix[0, :4] = [0.0, -0.0, 1.0, 0.1]
    text = json_body(matrix).decode()
    assert np.array_equal(np.array(json.loads(text), dtype=np.float32), matrix)
    assert text.startswith("[[0.0,-0.0,1.0,0.1,")  # float32 0.1, not 0.10000000149011612


def test_json_body_vector_and_empty() -> None:
    assert json.loads(json_body(np.array([0.5, -2.0], dtype=np.float32))) == [0.5, -2.0]
    assert json_body(np.zeros((2, 0), dtype=np.float32)) == b"[[],[]]"
    assert json_body(np.zeros(0, dtype=np.float32)) == b"[]"


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_check_finite_refuses_non_finite(bad: float) -> None:
    with pytest.raises(RunnerError):
        check_finite(np.array([[1.0, bad]], dtype=np.float32))


def test_check_finite_passes_the_matrix_through() -> None:
    matrix = np.array([[1.0, -2.0]], dtype=np.float32)
    assert check_finite(matrix) is matrix


def test_json_body_keeps_field_order_and_other_values() -> None:
    event = {
        "model": "all-minilm",
        "embeddings": np.array([[0.25, 1.0]], dtype=np.float32),
        "total_duration": 12,
        "note": "é",
    }
    body = json_body(event)
    assert json.loads(body) == {
        "model": "all-minilm",
        "embeddings": [[0.25, 1.0]],
        "total_duration": 12,
        "note": "é",
    }
    assert list(json.loads(body)) == list(event)
    assert json.loads(json_body({"model": "m", "embeddings": []})) == {
        "model": "m",
        "embeddings": [],
    }
