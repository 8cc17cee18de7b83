"""`/v1/embeddings` responses from the native /api/embed result.

OpenAI's SDKs ask for `base64` by default and decode it themselves: the vector's float32
values, little-endian, base64-encoded.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Mapping, Sequence
from typing import Any, Literal

Event = dict[str, Any]
EncodingFormat = Literal["float", "base64"]


def floats_to_base64(values: Sequence[float]) -> str:
    """The wire form of one vector with `encoding_format: base64`."""
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode("ascii")


def embedding_object(index: int, vector: Sequence[float], encoding: EncodingFormat) -> Event:
    value: str | list[float] = (
        floats_to_base64(vector) if encoding == "base64" else [float(v) for v in vector]
    )
    return {"object": "embedding", "embedding": value, "index": index}


def embedding_list(model: str, native: Mapping[str, Any], encoding: EncodingFormat) -> Event:
    """The `list` object for a native embed result (`embeddings`, `prompt_eval_count`)."""
    vectors: Sequence[Sequence[float]] = native.get("embeddings") or []
    tokens = int(native.get("prompt_eval_count") or 0)
    return {
        "object": "list",
        "data": [embedding_object(i, vector, encoding) for i, vector in enumerate(vectors)],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
