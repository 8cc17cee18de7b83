"""The runner's `/embedding` reply: vectors packed as base64 little-endian float32."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import numpy as np
import pytest

from ollamapy.runner import protocol as p


def wire(response: p.EmbeddingResponse) -> Any:
    """What the other process reads: the JSON text, parsed again."""
    return json.loads(json.dumps(response.to_json()))


def test_round_trip_keeps_float32_values() -> None:
    vectors = [[0.1, -2.5, 3e-8, 1e30], [0.0, -0.0, 1.0, 123.456]]
    sent = p.EmbeddingResponse.from_vectors(vectors, 11)
    got = p.EmbeddingResponse.from_json(wire(sent))
    assert (got.rows, got.dim, got.prompt_eval_count) == (2, 4, 11)
    want = np.array(vectors, dtype=np.float32)
    assert got.vectors() == want.tolist()
    matrix = np.frombuffer(got.data, dtype=p.EMBEDDING_DTYPE).reshape(got.rows, got.dim)
    assert np.array_equal(matrix, want)


def test_wire_form_is_little_endian_float32_with_shape() -> None:
    body = p.EmbeddingResponse.from_vectors([[1.0], [-2.0]], 3).to_json()
    assert body["shape"] == [2, 1] and body["dtype"] == "<f4"
    assert base64.b64decode(body["embeddings"]) == struct.pack("<2f", 1.0, -2.0)
    assert body["prompt_eval_count"] == 3


def test_no_vectors() -> None:
    got = p.EmbeddingResponse.from_json(wire(p.EmbeddingResponse.from_vectors([], 0)))
    assert (got.rows, got.dim, got.data, got.vectors()) == (0, 0, b"", [])


def test_vectors_of_different_lengths_are_refused() -> None:
    with pytest.raises(p.ProtocolError):
        p.EmbeddingResponse.from_vectors([[1.0, 2.0], [3.0]], 1)


def _body(**changes: Any) -> dict[str, Any]:
    body = p.EmbeddingResponse.from_vectors([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], 5).to_json()
    body.update(changes)
    return body


@pytest.mark.parametrize(
    "changes",
    [
        {"shape": [2, 4]},  # more values than sent
        {"shape": [1, 3]},  # fewer
        {"embeddings": base64.b64encode(b"\x00" * 23).decode()},  # not whole float32s
        {"shape": [3]},
        {"shape": [2, "3"]},
        {"shape": [True, 3]},
        {"shape": [-2, -3]},
        {"shape": None},
        {"embeddings": "not base64!"},
        {"embeddings": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]},  # the old float lists
        {"dtype": "<f8"},
        {"prompt_eval_count": "5"},
    ],
)
def test_malformed_replies_are_protocol_errors(changes: dict[str, Any]) -> None:
    with pytest.raises(p.ProtocolError):
        p.EmbeddingResponse.from_json(_body(**changes))


def test_data_must_match_shape() -> None:
    with pytest.raises(p.ProtocolError, match="not 2 x 2"):
        p.EmbeddingResponse(b"\x00" * 12, 2, 2, 0)
