"""The architecture-independent half of a conversion: planned tensors and the GGUF writer.

Each architecture turns a checkpoint into a list of `PlannedTensor`s (name, final shape,
storage type and a function that produces the data) before anything is written, so every
structural problem surfaces first. `write_gguf` then streams them one at a time into a
temporary file renamed into place only when complete: a failed conversion leaves nothing
behind, and memory use stays at about one tensor.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import gguf
import numpy as np
import numpy.typing as npt

OutType = Literal["f16", "f32"]
ProgressCallback = Callable[[int, int], None]
"""Called as `progress(bytes_written, total_bytes)` after each tensor."""

FILE_TYPES: dict[str, gguf.LlamaFileType] = {
    "f32": gguf.LlamaFileType.ALL_F32,
    "f16": gguf.LlamaFileType.MOSTLY_F16,
}


class TransformerShape(Protocol):
    """The hyper-parameters every architecture has (its own dataclass adds the rest)."""

    @property
    def n_vocab(self) -> int: ...
    @property
    def context_length(self) -> int: ...
    @property
    def n_embd(self) -> int: ...
    @property
    def n_ff(self) -> int: ...
    @property
    def n_layer(self) -> int: ...
    @property
    def n_head(self) -> int: ...


def add_shape(writer: gguf.GGUFWriter, hp: TransformerShape) -> None:
    """The `<arch>.*` keys every transformer has, as llama.cpp's loaders read them."""
    writer.add_context_length(hp.context_length)
    writer.add_embedding_length(hp.n_embd)
    writer.add_feed_forward_length(hp.n_ff)
    writer.add_block_count(hp.n_layer)
    writer.add_head_count(hp.n_head)


@dataclass(frozen=True)
class PlannedTensor:
    """One output tensor: its GGUF name, final shape, storage type and data source.

    `read` returns the data in the final shape (any float dtype); it is called only while
    writing, so planning never touches weight bytes.
    """

    gguf_name: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    read: Callable[[], npt.NDArray[Any]]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def storage_dtype(shape: tuple[int, ...], out_type: OutType, keep_f32: bool) -> np.dtype[Any]:
    """f16 only for 2-D matrices of an f16 file; vectors (norms, biases) stay f32."""
    f32 = out_type == "f32" or len(shape) < 2 or keep_f32
    return np.dtype(np.float32 if f32 else np.float16)


def write_gguf(
    output: Path,
    architecture: str,
    plan: list[PlannedTensor],
    progress: ProgressCallback | None,
    add_metadata: Callable[[gguf.GGUFWriter], None],
) -> int:
    """Stream the tensors into `<output>.tmp`, then rename it over `output`; return its size."""
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    total, done = sum(t.nbytes for t in plan), 0
    writer = gguf.GGUFWriter(tmp, architecture)
    try:
        add_metadata(writer)
        for t in plan:
            writer.add_tensor_info(t.gguf_name, t.shape, t.dtype, t.nbytes)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for t in plan:
            writer.write_tensor_data(_materialise(t))
            done += t.nbytes
            if progress is not None:
                progress(done, total)
        writer.close()
        os.replace(tmp, output)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    return output.stat().st_size


def _materialise(t: PlannedTensor) -> npt.NDArray[Any]:
    """Read a tensor, check it has its planned shape and cast it to its storage type."""
    data = t.read()
    if tuple(data.shape) != t.shape:
        raise AssertionError(f"{t.gguf_name}: produced {data.shape}, planned {t.shape}")
    return np.ascontiguousarray(data, dtype=t.dtype)
