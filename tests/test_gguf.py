"""The GGUF header reader: tiny files written by gguf.GGUFWriter, and hostile ones by hand."""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest

from ollamapy import gguf as reader
from ollamapy.errors import GGUFError
from ollamapy.gguf import format_parameter_count, read_gguf, read_key

Q4_1 = gguf.GGMLQuantizationType.Q4_1
TEMPLATE = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
TOKENS = [f"tok{i}" for i in range(2000)]


def write_model(path: Path, *, file_type: int | None = 3, tokens: list[str] = TOKENS) -> Path:
    """A small llama-shaped GGUF: one Q4_1 matrix (64x4), one F32 norm, a tokenizer."""
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name("tiny")
    writer.add_context_length(8192)
    writer.add_embedding_length(64)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_chat_template(TEMPLATE)
    writer.add_token_list(tokens)
    writer.add_array("tiny.small_list", [1, 2, 3])
    if file_type is not None:
        writer.add_file_type(file_type)
    writer.add_tensor("blk.0.w", np.zeros((4, 40), dtype=np.uint8), raw_dtype=Q4_1)
    writer.add_tensor("blk.0.norm", np.ones(64, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return write_model(tmp_path / "model.gguf")


def test_reads_a_written_model(model: Path) -> None:
    info = read_gguf(model)
    assert info.version == 3
    assert (info.architecture, info.model_family) == ("llama", "llama")
    assert (info.context_length, info.embedding_length) == (8192, 64)
    assert info.chat_template == TEMPLATE
    assert (info.bos_token_id, info.eos_token_id, info.pooling_type) == (1, 2, None)
    assert info.file_type == "Q4_1"
    assert info.parameter_count == 64 * 4 + 64
    assert info.metadata["llama.attention.layer_norm_rms_epsilon"] == 1e-05
    assert [(t.name, t.shape, t.type, t.size) for t in info.tensors] == [
        ("blk.0.w", (64, 4), "Q4_1", 4 * 2 * 20),
        ("blk.0.norm", (64,), "F32", 256),
    ]
    assert info.data_offset % 32 == 0


def test_read_key_stops_at_the_key_and_agrees_with_the_full_reader(model: Path) -> None:
    assert read_key(model, "general.architecture") == "llama"
    assert read_key(model, "general.file_type") == 3  # written after the token list
    assert read_key(model, "no.such.key") is None


def test_read_key_checks_the_file_like_the_full_reader(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGML" + b"\0" * 60)
    with pytest.raises(GGUFError):
        read_key(bad, "general.architecture")


def test_long_arrays_are_skipped_unless_asked(model: Path) -> None:
    info = read_gguf(model)
    assert "tokenizer.ggml.tokens" not in info.metadata
    assert info.array_lengths["tokenizer.ggml.tokens"] == len(TOKENS)
    assert info.metadata["tiny.small_list"] == [1, 2, 3]
    assert read_gguf(model, keep_arrays=None).metadata["tokenizer.ggml.tokens"] == TOKENS


@pytest.mark.parametrize(
    ("verbose", "keep", "tokens", "small"),
    [(False, None, None, None), (True, None, TOKENS, [1, 2, 3]), (True, 1024, None, [1, 2, 3])],
    ids=["plain-hides-arrays", "verbose-shows-arrays", "verbose-but-skipped-at-read"],
)
def test_model_info(model: Path, verbose: bool, keep: int | None, tokens: Any, small: Any) -> None:
    info = read_gguf(model, keep_arrays=keep).model_info(verbose=verbose)
    assert info["tokenizer.ggml.tokens"] == tokens
    assert info["tiny.small_list"] == small
    assert info["general.parameter_count"] == 320
    assert "general.name" not in info
    assert "tokenizer.chat_template" not in info
    assert list(info) == sorted(info)


@pytest.mark.parametrize(
    ("file_type", "expected"),
    [(None, "Q4_1"), (15, "Q4_K_M"), (0, "F32"), (1, "F16"), (32, "BF16"), (1024, "Q4_1")],
    ids=["inferred-from-weights", "q4_k_m", "f32", "f16", "bf16", "guessed-is-inferred"],
)
def test_file_type(tmp_path: Path, file_type: int | None, expected: str) -> None:
    info = read_gguf(write_model(tmp_path / "m.gguf", file_type=file_type))
    assert info.file_type == expected


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (0, "0"),
        (999, "999"),
        (1000, "1K"),
        (1001, "1K"),
        (1_000_000, "1M"),
        (125_000_000, "125M"),
        (134_515_008, "134.52M"),
        (500_500_000, "500.50M"),
        (500_550_000, "500.55M"),
        (1_000_000_000, "1B"),
        (1_235_814_400, "1.2B"),
        (2_800_000_000, "2.8B"),
        (2_850_000_000, "2.9B"),
        (1_000_000_000_000, "1000B"),
    ],
    ids=lambda v: str(v),
)
def test_format_parameter_count(count: int, expected: str) -> None:
    assert format_parameter_count(count) == expected


def test_every_truncation_is_an_error(tmp_path: Path) -> None:
    model = write_model(tmp_path / "small.gguf", tokens=["<s>", "</s>", "a"])
    data = model.read_bytes()
    info = read_gguf(model)
    end = info.data_offset + max(t.offset + t.size for t in info.tensors)
    cut = tmp_path / "cut.gguf"
    for size in range(end):
        cut.write_bytes(data[:size])
        with pytest.raises(GGUFError):
            read_gguf(cut)
    cut.write_bytes(data[:end])
    assert read_gguf(cut).parameter_count == info.parameter_count


def test_every_truncation_of_a_skipped_vocabulary_is_an_error(tmp_path: Path) -> None:
    model = write_model(tmp_path / "small.gguf", tokens=[f"t{i}" for i in range(40)])
    data = model.read_bytes()
    info = read_gguf(model, keep_arrays=0)
    end = info.data_offset + max(t.offset + t.size for t in info.tensors)
    cut = tmp_path / "cut.gguf"
    for size in range(end):
        cut.write_bytes(data[:size])
        with pytest.raises(GGUFError):
            read_gguf(cut, keep_arrays=0)


def test_a_skipped_vocabulary_reads_the_same_across_buffer_refills(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = read_gguf(model, keep_arrays=0)
    monkeypatch.setattr(reader, "_CHUNK", 37)  # strings now cross the buffer's end
    pieces = read_gguf(model, keep_arrays=0)
    assert (pieces.metadata, pieces.array_lengths) == (whole.metadata, whole.array_lengths)
    assert pieces.tensors == whole.tensors and pieces.data_offset == whole.data_offset


def test_a_skipped_string_over_the_length_limit_is_an_error(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reader, "MAX_STRING_LENGTH", 5)  # "tok1000" has 7 bytes
    with pytest.raises(GGUFError, match="exceeds the limit of 5"):
        read_gguf(model, keep_arrays=0)


def test_a_skipped_vocabulary_still_counts_against_the_header_cap(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reader, "MAX_HEADER_BYTES", 4096)  # inside the token list
    with pytest.raises(GGUFError, match="header is larger"):
        read_gguf(model, keep_arrays=0)


# Hand-built files: a header, key/values and tensor entries from these helpers.


def header(n_tensors: int = 0, n_kv: int = 0, version: int = 3) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv)


def string(text: str, length: int | None = None) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data) if length is None else length) + data


def kv_u32(key: str, value: int) -> bytes:
    return string(key) + struct.pack("<II", 4, value)


def kv_array(key: str, item_type: int, count: int, items: bytes = b"") -> bytes:
    return string(key) + struct.pack("<IIQ", 9, item_type, count) + items


def tensor(name: str, shape: tuple[int, ...], kind: int = 0, offset: int = 0) -> bytes:
    dims = struct.pack(f"<I{len(shape)}Q", len(shape), *shape)
    return string(name) + dims + struct.pack("<IQ", kind, offset)


def with_data(head: bytes, data_size: int) -> bytes:
    """Pad the header to 32 bytes and append data_size bytes of tensor data."""
    return head + b"\0" * (-len(head) % 32) + b"\0" * data_size


HOSTILE: dict[str, tuple[bytes, str]] = {
    "empty": (b"", "truncated"),
    "bad-magic": (b"GGML" + header()[4:], "bad magic"),
    "version-1": (header(version=1), "unsupported GGUF version 1"),
    "version-4": (header(version=4), "unsupported GGUF version 4"),
    "big-endian": (b"GGUF" + struct.pack(">IQQ", 3, 0, 0), "big-endian"),
    "huge-kv-count": (header(n_kv=1 << 62), "key/value count"),
    "huge-tensor-count": (header(n_tensors=1 << 62), "tensor count"),
    "kv-count-beyond-file": (header(n_kv=1000), "truncated"),
    "huge-key-length": (header(n_kv=1) + string("k", length=1 << 60), "exceeds the limit"),
    "key-longer-than-file": (header(n_kv=1) + string("k", length=1 << 20), "truncated"),
    "huge-string-value": (
        header(n_kv=1) + string("k") + struct.pack("<I", 8) + string("v", length=1 << 40),
        "exceeds the limit",
    ),
    "bad-value-type": (header(n_kv=1) + string("k") + struct.pack("<I", 99), "value type 99"),
    "huge-array-count": (header(n_kv=1) + kv_array("a", 4, 1 << 50), "exceeds the limit"),
    "array-beyond-file": (header(n_kv=1) + kv_array("a", 10, (4 << 20) - 1), "truncated"),
    "string-array-beyond-file": (header(n_kv=1) + kv_array("a", 8, 1 << 20), "truncated"),
    "nested-array": (header(n_kv=1) + kv_array("a", 9, 1), "nested arrays"),
    "duplicate-key": (header(n_kv=2) + kv_u32("k", 1) + kv_u32("k", 2), "duplicate GGUF key"),
    "alignment-zero": (header(n_kv=1) + kv_u32("general.alignment", 0), "alignment"),
    "alignment-not-power-of-two": (
        header(n_kv=1) + kv_u32("general.alignment", 24),
        "not a power of two",
    ),
    "too-many-dims": (header(n_tensors=1) + tensor("t", (1, 1, 1, 1, 1)), "5 dimensions"),
    "unknown-tensor-type": (with_data(header(n_tensors=1) + tensor("t", (4,), 77), 64), "type 77"),
    "tensor-beyond-file": (with_data(header(n_tensors=1) + tensor("t", (1024,)), 64), "outside"),
    "tensor-offset-beyond-file": (
        with_data(header(n_tensors=1) + tensor("t", (4,), offset=1 << 62), 64),
        "outside",
    ),
    "misaligned-offset": (
        with_data(header(n_tensors=1) + tensor("t", (4,), offset=4), 64),
        "aligned",
    ),
    "overlapping-tensors": (
        with_data(header(n_tensors=2) + tensor("a", (16,)) + tensor("b", (16,), offset=32), 128),
        "overlaps",
    ),
    "duplicate-tensor-names": (
        with_data(header(n_tensors=2) + tensor("a", (8,)) + tensor("a", (8,), offset=32), 64),
        "duplicate tensor",
    ),
    "shape-overflow": (
        with_data(header(n_tensors=1) + tensor("t", (1 << 40, 1 << 40)), 64),
        "too large",
    ),
    "row-not-whole-blocks": (
        with_data(header(n_tensors=1) + tensor("t", (33,), kind=int(Q4_1)), 64),
        "multiple of 32",
    ),
}


@pytest.mark.parametrize(("data", "message"), HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_files(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "hostile.gguf"
    path.write_bytes(data)
    with pytest.raises(GGUFError, match=message):
        read_gguf(path)


def test_hand_built_file_is_valid(tmp_path: Path) -> None:
    """The helpers above build a valid file when nothing is wrong, so each case tests one flaw."""
    path = tmp_path / "ok.gguf"
    strings = string("a") + string("bc")
    head = header(n_tensors=2, n_kv=2) + kv_u32("general.alignment", 32)
    head += kv_array("s", 8, 2, strings) + tensor("a", (16,)) + tensor("b", (16,), offset=64)
    path.write_bytes(with_data(head, 128))
    info = read_gguf(path)
    assert info.metadata == {"general.alignment": 32, "s": ["a", "bc"]}
    assert [t.offset for t in info.tensors] == [0, 64]


def test_total_kept_items_are_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reader, "MAX_KEPT_ITEMS", 4)
    path = tmp_path / "many.gguf"
    items = struct.pack("<3I", 1, 2, 3)
    path.write_bytes(header(n_kv=2) + kv_array("a", 4, 3, items) + kv_array("b", 4, 3, items))
    with pytest.raises(GGUFError, match="items in all"):
        read_gguf(path)


def test_header_size_is_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reader, "MAX_HEADER_BYTES", 64)
    path = tmp_path / "big.gguf"
    path.write_bytes(header(n_kv=1) + kv_array("a", 0, 100, bytes(100)))
    with pytest.raises(GGUFError, match="header is larger"):
        read_gguf(path)


@pytest.mark.timeout(10)
def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "model.gguf"
    os.mkfifo(fifo)
    with pytest.raises(GGUFError, match="not a regular file"):
        read_gguf(fifo)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.mkdir(), "not a regular file"),
        (lambda p: None, "cannot open"),
        (lambda p: p.symlink_to("/dev/null"), "not a regular file"),
    ],
    ids=["directory", "missing", "symlink-to-device"],
)
def test_non_files_are_refused(tmp_path: Path, make: Any, message: str) -> None:
    path = tmp_path / "model.gguf"
    make(path)
    with pytest.raises(GGUFError, match=message):
        read_gguf(path)
