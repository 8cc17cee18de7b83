"""Read a GGUF file's header, metadata and tensor table without loading any tensor data.

A GGUF file is untrusted input (users import files they downloaded; Ollama has had CVEs from
malformed ones), so this reader trusts nothing it reads: every length and count is checked
against fixed limits and against the bytes actually left in the file *before* anything is
allocated, every tensor must lie inside the file, and only regular files are opened (a FIFO
or device would block or never end). Any violation is a `GGUFError` naming the problem.

The `gguf` package supplies only constants (value types, quantization names and block sizes);
its own reader memory-maps the whole file and trusts the counts in it.
"""

from __future__ import annotations

import os
import stat
import struct
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType, LlamaFileType

from ollamapy.errors import GGUFError

MAGIC = b"GGUF"
VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_STRING_LENGTH = 16 << 20
MAX_ARRAY_LENGTH = 4 << 20
MAX_KV_COUNT = 1 << 16
MAX_TENSOR_COUNT = 1 << 16
MAX_TENSOR_DIMS = 4
MAX_HEADER_BYTES = 128 << 20
"""The header (key/values plus tensor table) must end within this many bytes."""
MAX_KEPT_ITEMS = 8 << 20
"""At most this many array items are turned into Python objects, all arrays together."""
KEEP_ARRAY_LENGTH = 1024
"""By default, arrays longer than this (the tokenizer's tokens, merges, scores) are skipped."""

_INT64_MAX = (1 << 63) - 1
_CHUNK = 1 << 20
_U64 = struct.Struct("<Q")
_HIDDEN_IN_SHOW = ("general.name", "tokenizer.chat_template")

_SCALARS: dict[GGUFValueType, str] = {
    GGUFValueType.UINT8: "B",
    GGUFValueType.INT8: "b",
    GGUFValueType.UINT16: "H",
    GGUFValueType.INT16: "h",
    GGUFValueType.UINT32: "I",
    GGUFValueType.INT32: "i",
    GGUFValueType.FLOAT32: "f",
    GGUFValueType.BOOL: "?",
    GGUFValueType.UINT64: "Q",
    GGUFValueType.INT64: "q",
    GGUFValueType.FLOAT64: "d",
}


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One tensor's entry: `shape` in GGUF order (fastest-varying dimension first, as Ollama
    reports it), `type` the GGML type name, `offset` relative to the data section."""

    name: str
    shape: tuple[int, ...]
    type: str
    offset: int
    size: int

    @property
    def n_elements(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count


@dataclass(frozen=True, slots=True)
class GGUFInfo:
    """What a GGUF file says about itself.

    `metadata` holds every key/value except arrays longer than the reader's limit;
    `array_lengths` holds the length of every array, kept or not.
    """

    version: int
    metadata: dict[str, Any]
    array_lengths: dict[str, int]
    tensors: tuple[TensorInfo, ...]
    data_offset: int
    file_size: int

    @property
    def architecture(self) -> str:
        value = self.metadata.get("general.architecture")
        return value if isinstance(value, str) and value else "unknown"

    @property
    def model_family(self) -> str:
        """Ollama's `details.family`: the architecture name."""
        return self.architecture

    @property
    def parameter_count(self) -> int:
        return sum(tensor.n_elements for tensor in self.tensors)

    @property
    def file_type(self) -> str:
        """The quantization as Ollama names it (`Q4_K_M`, `F16`, ...), else "unknown"."""
        return _file_type_name(self.metadata.get("general.file_type")) or self._guess_file_type()

    @property
    def context_length(self) -> int | None:
        return self._arch_int("context_length")

    @property
    def embedding_length(self) -> int | None:
        return self._arch_int("embedding_length")

    @property
    def pooling_type(self) -> int | None:
        return self._arch_int("pooling_type")

    @property
    def chat_template(self) -> str | None:
        value = self.metadata.get("tokenizer.chat_template")
        return value if isinstance(value, str) else None

    @property
    def bos_token_id(self) -> int | None:
        return _as_int(self.metadata.get("tokenizer.ggml.bos_token_id"))

    @property
    def eos_token_id(self) -> int | None:
        return _as_int(self.metadata.get("tokenizer.ggml.eos_token_id"))

    def model_info(self, *, verbose: bool = False) -> dict[str, Any]:
        """`model_info` as `/api/show` returns it: no name or chat template, the parameter
        count added, and every non-empty array shown as None unless `verbose` (an array the
        reader skipped is None either way: read with `keep_arrays=None` for all of them)."""
        info = {k: v for k, v in self.metadata.items() if k not in _HIDDEN_IN_SHOW}
        for key, length in self.array_lengths.items():
            hide = (length > 0 and not verbose) or key not in info
            if hide and key not in _HIDDEN_IN_SHOW:
                info[key] = None
        info["general.parameter_count"] = self.parameter_count
        return dict(sorted(info.items()))

    def _arch_int(self, suffix: str) -> int | None:
        return _as_int(self.metadata.get(f"{self.architecture}.{suffix}"))

    def _guess_file_type(self) -> str:
        """The most common type among weight matrices (norms and biases are always F32)."""
        types = Counter(t.type for t in self.tensors if len(t.shape) >= 2)
        return types.most_common(1)[0][0] if types else "unknown"


def read_gguf(
    path: str | os.PathLike[str], *, keep_arrays: int | None = KEEP_ARRAY_LENGTH
) -> GGUFInfo:
    """Read and check a GGUF file's header; arrays longer than `keep_arrays` are skipped
    (None keeps every array, as `ollama show --verbose` needs)."""
    with _open_regular(path) as (file, size):
        return _Parser(_Source(file, size), keep_arrays).parse()


def read_key(path: str | os.PathLike[str], key: str) -> Any:
    """One metadata value, reading key/values in file order only until `key` (None when
    absent). Fast for keys written first, such as `general.architecture`: a full
    `read_gguf` walks the whole vocabulary (~85 ms for a 49k-token model)."""
    with _open_regular(path) as (file, size):
        parser = _Parser(_Source(file, size), keep_arrays=0)
        _version, _n_tensors, n_kv = parser._header()
        for _ in range(n_kv):
            parser._key_value()
            if key in parser.metadata:
                return parser.metadata[key]
    return None


def format_parameter_count(count: int) -> str:
    """Ollama's `format.HumanNumber`: 134515008 -> "134.52M", 1_235_814_400 -> "1.2B"."""
    for unit, scale, decimals in (("B", 1_000_000_000, 1), ("M", 1_000_000, 2)):
        if count >= scale:
            number = count / scale
            return f"{number:.0f}{unit}" if number.is_integer() else f"{number:.{decimals}f}{unit}"
    if count >= 1000:
        return f"{count / 1000:.0f}K"
    return str(count)


def _file_type_name(value: object) -> str | None:
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    try:
        name = LlamaFileType(value).name
    except ValueError:
        return None
    if name == "GUESSED":
        return None
    return name.removeprefix("MOSTLY_").removeprefix("ALL_")


def _as_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@contextmanager
def _open_regular(path: str | os.PathLike[str]) -> Iterator[tuple[BinaryIO, int]]:
    """Open only a regular file, checking before and after opening (the path could be swapped
    in between); O_NONBLOCK keeps a FIFO from blocking the open itself."""
    try:
        _require_regular(os.stat(path), path)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise GGUFError(f"cannot open {os.fspath(path)!r}: {exc.strerror}") from None
    with os.fdopen(fd, "rb", buffering=0) as file:
        info = os.fstat(fd)
        _require_regular(info, path)
        yield file, info.st_size


def _require_regular(info: os.stat_result, path: str | os.PathLike[str]) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise GGUFError(f"{os.fspath(path)!r} is not a regular file")


class _Source:
    """Bounded sequential reads: a read never asks for more than the file has left, nor
    past MAX_HEADER_BYTES, so a forged length cannot cause a large allocation."""

    def __init__(self, file: BinaryIO, size: int) -> None:
        self._file = file
        self.size = size
        self.pos = 0
        self._buffer = b""
        self._start = 0

    def read(self, n: int, what: str) -> bytes:
        self._check(n, what)
        begin = self.pos - self._start
        if begin + n > len(self._buffer):
            self._fill(n, what)
            begin = 0
        self.pos += n
        return self._buffer[begin : begin + n]

    def skip(self, n: int, what: str) -> None:
        self._check(n, what)
        self.pos += n
        if self.pos - self._start > len(self._buffer):
            self._buffer, self._start = b"", self.pos

    def unpack(self, code: str, what: str) -> Any:
        return struct.unpack("<" + code, self.read(struct.calcsize(code), what))[0]

    def skip_strings(self, count: int, max_length: int, what: str) -> None:
        """Skip `count` strings (a u64 length, then the bytes) as a vocabulary holds them.

        Lengths are read straight from the buffer, with no `read` call per string: a
        tokenizer has 50k-260k of them, and reading each one took 150-400 ms per model.
        A string that crosses the end of the buffer (or of the header limit) goes through
        `unpack` and `skip`, which refill the buffer and report truncation as before."""
        while count:
            buffer, begin = self._buffer, self.pos - self._start
            end = min(len(buffer), MAX_HEADER_BYTES - self._start)
            while count and begin + 8 <= end:
                (length,) = _U64.unpack_from(buffer, begin)
                if length > max_length:
                    _limit(length, max_length, what)
                if begin + 8 + length > end:
                    break
                begin += 8 + length
                count -= 1
            self.pos = self._start + begin
            if count:
                self.skip(_limit(self.unpack("Q", what), max_length, what), what)
                count -= 1

    def _check(self, n: int, what: str) -> None:
        if n > self.size - self.pos:
            raise GGUFError(f"GGUF file is truncated: {what} at offset {self.pos} needs {n} bytes")
        if self.pos + n > MAX_HEADER_BYTES:
            raise GGUFError(f"GGUF header is larger than {MAX_HEADER_BYTES} bytes")

    def _fill(self, n: int, what: str) -> None:
        rest = self._buffer[self.pos - self._start :]
        want = min(max(n - len(rest), _CHUNK), self.size - self.pos - len(rest))
        self._file.seek(self.pos + len(rest))
        parts = [rest]
        while want > 0 and (data := self._file.read(want)):
            parts.append(data)
            want -= len(data)
        self._buffer, self._start = b"".join(parts), self.pos
        if len(self._buffer) < n:
            raise GGUFError(f"GGUF file is truncated: {what} at offset {self.pos}")


class _Parser:
    def __init__(self, source: _Source, keep_arrays: int | None) -> None:
        self.src = source
        self.keep = keep_arrays
        self.metadata: dict[str, Any] = {}
        self.array_lengths: dict[str, int] = {}
        self.kept_items = 0

    def parse(self) -> GGUFInfo:
        version, n_tensors, n_kv = self._header()
        for _ in range(n_kv):
            self._key_value()
        raw = [self._tensor_entry() for _ in range(n_tensors)]
        alignment = self._alignment()
        data_offset = _align(self.src.pos, alignment)
        tensors = _place(raw, alignment, data_offset, self.src.size)
        return GGUFInfo(
            version, self.metadata, self.array_lengths, tensors, data_offset, self.src.size
        )

    def _header(self) -> tuple[int, int, int]:
        if self.src.read(4, "magic") != MAGIC:
            raise GGUFError("not a GGUF file (bad magic)")
        version = self.src.unpack("I", "version")
        if version not in VERSIONS:
            if struct.unpack(">I", struct.pack("<I", version))[0] in VERSIONS:
                raise GGUFError("big-endian GGUF files are not supported")
            raise GGUFError(f"unsupported GGUF version {version}")
        n_tensors = _limit(self.src.unpack("Q", "tensor count"), MAX_TENSOR_COUNT, "tensor count")
        n_kv = _limit(self.src.unpack("Q", "key/value count"), MAX_KV_COUNT, "key/value count")
        return version, n_tensors, n_kv

    def _key_value(self) -> None:
        key = self._string("key")
        if key in self.metadata or key in self.array_lengths:
            raise GGUFError(f"duplicate GGUF key {key!r}")
        kind = self._value_type(key)
        if kind is GGUFValueType.ARRAY:
            self._array(key)
        else:
            self.metadata[key] = self._scalar(kind, key)

    def _value_type(self, key: str) -> GGUFValueType:
        raw = self.src.unpack("I", f"type of {key!r}")
        try:
            return GGUFValueType(raw)
        except ValueError:
            raise GGUFError(f"invalid value type {raw} for GGUF key {key!r}") from None

    def _scalar(self, kind: GGUFValueType, key: str) -> Any:
        if kind is GGUFValueType.STRING:
            return self._string(f"value of {key!r}")
        value = self.src.unpack(_SCALARS[kind], f"value of {key!r}")
        return _shortest_float32(value) if kind is GGUFValueType.FLOAT32 else value

    def _string(self, what: str) -> str:
        length = _limit(self.src.unpack("Q", f"length of {what}"), MAX_STRING_LENGTH, what)
        return self.src.read(length, what).decode("utf-8", errors="replace")

    def _array(self, key: str) -> None:
        kind = self._value_type(key)
        if kind is GGUFValueType.ARRAY:
            raise GGUFError(f"nested arrays are not supported (key {key!r})")
        count = _limit(self.src.unpack("Q", f"length of {key!r}"), MAX_ARRAY_LENGTH, key)
        self.array_lengths[key] = count
        keep = self.keep is None or count <= self.keep
        if keep:
            self.kept_items += count
            if self.kept_items > MAX_KEPT_ITEMS:
                raise GGUFError(f"GGUF arrays hold more than {MAX_KEPT_ITEMS} items in all")
        if kind is GGUFValueType.STRING:
            values = self._strings(count, key, keep)
        else:
            values = self._numbers(kind, count, key, keep)
        if keep:
            self.metadata[key] = values

    def _strings(self, count: int, key: str, keep: bool) -> list[str]:
        if count * 8 > self.src.size - self.src.pos:
            raise GGUFError(f"GGUF file is truncated: array {key!r} of {count} strings")
        if keep:
            return [self._string(f"item of {key!r}") for _ in range(count)]
        self.src.skip_strings(count, MAX_STRING_LENGTH, f"item of {key!r}")
        return []

    def _numbers(self, kind: GGUFValueType, count: int, key: str, keep: bool) -> list[Any]:
        code = _SCALARS[kind]
        size = count * struct.calcsize(code)
        if not keep:
            self.src.skip(size, f"array {key!r}")
            return []
        values = list(struct.unpack(f"<{count}{code}", self.src.read(size, f"array {key!r}")))
        if kind is GGUFValueType.FLOAT32:
            return [_shortest_float32(value) for value in values]
        return values

    def _tensor_entry(self) -> tuple[str, tuple[int, ...], GGMLQuantizationType, int]:
        name = self._string("tensor name")
        n_dims = self.src.unpack("I", f"dimensions of tensor {name!r}")
        if n_dims > MAX_TENSOR_DIMS:
            raise GGUFError(f"tensor {name!r} has {n_dims} dimensions (at most 4)")
        shape = tuple(self.src.unpack("Q", f"shape of tensor {name!r}") for _ in range(n_dims))
        raw_type = self.src.unpack("I", f"type of tensor {name!r}")
        try:
            kind = GGMLQuantizationType(raw_type)
        except ValueError:
            raise GGUFError(f"tensor {name!r} has unknown type {raw_type}") from None
        offset = self.src.unpack("Q", f"offset of tensor {name!r}")
        return name, shape, kind, offset

    def _alignment(self) -> int:
        value = self.metadata.get("general.alignment", DEFAULT_ALIGNMENT)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise GGUFError(f"invalid general.alignment {value!r}")
        if value & (value - 1):
            raise GGUFError(f"general.alignment {value} is not a power of two")
        return value


def _place(
    raw: list[tuple[str, tuple[int, ...], GGMLQuantizationType, int]],
    alignment: int,
    data_offset: int,
    file_size: int,
) -> tuple[TensorInfo, ...]:
    """Check every tensor's data lies inside the file, aligned and not overlapping another."""
    tensors = tuple(_tensor(*entry, alignment) for entry in raw)
    if len({t.name for t in tensors}) != len(tensors):
        raise GGUFError("duplicate tensor names")
    end = 0
    for tensor in sorted(tensors, key=lambda t: t.offset):
        if tensor.offset < end:
            raise GGUFError(f"tensor {tensor.name!r} overlaps another tensor")
        end = tensor.offset + tensor.size
        if data_offset + end > file_size:
            raise GGUFError(f"tensor {tensor.name!r} data lies outside the file")
    return tensors


def _tensor(
    name: str, shape: tuple[int, ...], kind: GGMLQuantizationType, offset: int, alignment: int
) -> TensorInfo:
    block, type_size = GGML_QUANT_SIZES[kind]
    elements = 1
    for dim in shape:
        elements *= dim
        if dim > _INT64_MAX or elements > _INT64_MAX:
            raise GGUFError(f"tensor {name!r} shape {shape} is too large")
    if shape and shape[0] % block:
        raise GGUFError(f"tensor {name!r} row of {shape[0]} is not a multiple of {block}")
    if offset % alignment:
        raise GGUFError(f"tensor {name!r} offset {offset} is not aligned to {alignment}")
    return TensorInfo(name, shape, kind.name, offset, elements // block * type_size)


def _shortest_float32(value: float) -> float:
    """The float whose decimal form is the shortest one naming this float32, so 1e-5 stored
    as float32 reads back as 1e-05 (what Ollama prints), not 9.999999747378752e-06."""
    return float(str(np.float32(value)))


def _limit(value: int, maximum: int, what: str) -> int:
    if value > maximum:
        raise GGUFError(f"GGUF {what} of {value} exceeds the limit of {maximum}")
    return value


def _align(offset: int, alignment: int) -> int:
    return (offset + alignment - 1) // alignment * alignment
