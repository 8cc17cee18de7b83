"""A bounded, dependency-free reader for Hugging Face Safetensors checkpoints.

The format is an 8-byte little-endian header length, a JSON header that names each tensor's
dtype, shape and byte range, then the raw little-endian data. We parse it ourselves rather
than pulling in the `safetensors` package, and we validate every length and offset against
the real file size before trusting it, so a corrupt or hostile file fails with a clear
`BadRequestError` instead of a huge allocation or an out-of-range read.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ollamapy.errors import BadRequestError

MAX_HEADER_BYTES = 100 * 1024 * 1024
"""The Safetensors spec caps the JSON header at 100 MB; anything larger is corrupt."""

MAX_INDEX_BYTES = 64 * 1024 * 1024
"""A shard index is a small JSON map; refuse to parse anything absurdly large."""

_DTYPES: dict[str, np.dtype[Any]] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
"""Safetensors dtype names and how their bytes are stored (BF16 is kept as raw uint16)."""

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives: its file, dtype, shape and absolute byte range."""

    name: str
    path: Path
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def nbytes(self) -> int:
        """Size of the stored data in bytes."""
        return self.end - self.start

    @property
    def n_elements(self) -> int:
        """Number of elements (1 for a scalar)."""
        return math.prod(self.shape)


def read_header(path: Path) -> dict[str, TensorInfo]:
    """Parse and validate the header of one `.safetensors` file without reading its data."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                raise BadRequestError(f"{path.name}: not a safetensors file (shorter than 8 bytes)")
            (header_len,) = struct.unpack("<Q", prefix)
            limit = min(MAX_HEADER_BYTES, size - 8)
            if header_len > limit:
                raise BadRequestError(
                    f"{path.name}: corrupt safetensors header: it claims {header_len} bytes "
                    f"but at most {limit} are possible"
                )
            raw = f.read(header_len)
    except OSError as exc:
        raise BadRequestError(f"cannot read {path.name}: {exc.strerror or exc}") from exc
    header = _decode_header(path, raw)
    data_start = 8 + header_len
    return {
        name: _tensor_info(path, name, entry, data_start, size)
        for name, entry in header.items()
        if name != "__metadata__"
    }


def _decode_header(path: Path, raw: bytes) -> dict[str, Any]:
    """Decode the JSON header, which must be an object."""
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequestError(f"{path.name}: corrupt safetensors header: {exc}") from exc
    if not isinstance(header, dict):
        raise BadRequestError(f"{path.name}: corrupt safetensors header: not a JSON object")
    return header


def _tensor_info(path: Path, name: str, entry: Any, data_start: int, size: int) -> TensorInfo:
    """Check one header entry against the file and turn it into a `TensorInfo`."""

    def bad(why: str) -> BadRequestError:
        return BadRequestError(f"{path.name}: tensor {name!r}: {why}")

    if not isinstance(entry, dict):
        raise bad("header entry is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in _DTYPES:
        raise bad(f"unsupported dtype {dtype!r}")
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        raise bad(f"invalid shape {shape!r}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_count, offsets))):
        raise bad(f"invalid data_offsets {offsets!r}")
    begin, end = offsets
    if begin > end or data_start + end > size:
        raise bad(f"data_offsets {offsets} run past the end of the file")
    expected = math.prod(shape) * _DTYPES[dtype].itemsize
    if end - begin != expected:
        raise bad(f"holds {end - begin} bytes but {dtype}{shape} needs {expected}")
    return TensorInfo(name, path, dtype, tuple(shape), data_start + begin, data_start + end)


def _is_count(value: Any) -> bool:
    """True for a non-negative JSON integer (bools are ints in Python; reject them)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class Checkpoint(Mapping[str, TensorInfo]):
    """All tensors of a (possibly sharded) checkpoint, loaded lazily through memory maps.

    Mapping access gives each tensor's `TensorInfo` so callers can plan a conversion
    (names, shapes, sizes) before touching any weight bytes.
    """

    def __init__(self, tensors: dict[str, TensorInfo]) -> None:
        self._tensors = tensors
        self._maps: dict[Path, np.memmap[Any, np.dtype[np.uint8]]] = {}

    def __getitem__(self, name: str) -> TensorInfo:
        return self._tensors[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)

    def load(self, name: str) -> npt.NDArray[Any]:
        """Read one tensor; floating-point data comes back as float16/float32/float64.

        BF16 has no numpy dtype, so it is widened to float32 exactly (shift into the high
        half of a float32).
        """
        info = self._tensors[name]
        raw = self._map(info.path)[info.start : info.end]
        if info.dtype == "BF16":
            widened = raw.view("<u2").astype(np.uint32) << 16
            return widened.view(np.float32).reshape(info.shape)
        return raw.view(_DTYPES[info.dtype]).reshape(info.shape)

    def _map(self, path: Path) -> np.memmap[Any, np.dtype[np.uint8]]:
        """One read-only memory map per shard, opened on first use."""
        if path not in self._maps:
            self._maps[path] = np.memmap(path, dtype=np.uint8, mode="r")
        return self._maps[path]


def open_checkpoint(model_dir: Path) -> Checkpoint:
    """Find the checkpoint in a model directory: a single file, an index, or bare shards."""
    single = model_dir / SINGLE_FILE
    if single.is_file():
        return Checkpoint(read_header(single))
    index = model_dir / INDEX_FILE
    if index.is_file():
        shards = _shards_from_index(model_dir, index)
    else:
        shards = sorted(model_dir.glob("model-*-of-*.safetensors"))
    if not shards:
        raise BadRequestError(
            f"no {SINGLE_FILE} (or sharded model-*-of-*.safetensors) found in {model_dir}"
        )
    tensors: dict[str, TensorInfo] = {}
    for shard in shards:
        for name, info in read_header(shard).items():
            if name in tensors:
                raise BadRequestError(f"tensor {name!r} appears in more than one shard")
            tensors[name] = info
    return Checkpoint(tensors)


def _shards_from_index(model_dir: Path, index: Path) -> list[Path]:
    """The shard files an index's `weight_map` names, each of which must exist."""
    if index.stat().st_size > MAX_INDEX_BYTES:
        raise BadRequestError(f"{index.name} is too large to be a shard index")
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map")
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
        raise BadRequestError(f"{index.name}: invalid JSON: {exc}") from exc
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise BadRequestError(f"{index.name}: missing or invalid 'weight_map'")
    shards = []
    for name in sorted(set(weight_map.values())):
        shard = model_dir / name
        if Path(name).name != name or not shard.is_file():
            raise BadRequestError(f"{index.name} names shard {name!r}, which is not in {model_dir}")
        shards.append(shard)
    return shards
