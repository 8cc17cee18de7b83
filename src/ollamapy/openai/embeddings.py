"""`/v1/embeddings` responses from the native /api/embed result.

OpenAI's SDKs ask for `base64` by default and decode it themselves: the vector's float32
values, little-endian, base64-encoded. The native result's vectors may be lists or the
rows of a numpy matrix (what `/api/embed` computes); with `float`, numpy rows are passed
through for the route to encode (lists become lists of Python floats).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

Event = dict[str, Any]
EncodingFormat = Literal["float", "base64"]


Vector = Sequence[float] | npt.NDArray[np.floating[Any]]


def floats_to_base64(values: Vector) -> str:
    """The wire form of one vector with `encoding_format: base64`."""
    return base64.b64encode(np.asarray(values, dtype="<f4").tobytes()).decode("ascii")


def embedding_object(index: int, vector: Vector, encoding: EncodingFormat) -> Event:
    """One `embedding` object; a numpy row stays a numpy row with `encoding_format: float`.

    Keeping the row lets the route write it with a numpy-aware encoder (float32 values in
    their shortest form) instead of making, then formatting, a Python float per value.
    """
    value: str | list[float] | npt.NDArray[np.floating[Any]]
    if encoding == "base64":
        value = floats_to_base64(vector)
    elif isinstance(vector, np.ndarray):
        value = vector
    else:
        value = [float(x) for x in vector]
    return {"object": "embedding", "embedding": value, "index": index}


def embedding_list(model: str, native: Mapping[str, Any], encoding: EncodingFormat) -> Event:
    """The `list` object for a native embed result (`embeddings`, `prompt_eval_count`)."""
    vectors: Sequence[Vector] | npt.NDArray[np.floating[Any]] = native.get("embeddings", [])
    if vectors is None:
        vectors = []
    tokens = int(native.get("prompt_eval_count") or 0)
    return {
        "object": "list",
        "data": [embedding_object(i, vector, encoding) for i, vector in enumerate(vectors)],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
