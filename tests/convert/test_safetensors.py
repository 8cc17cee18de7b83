"""The bounded Safetensors reader: round trips, shards, and every way a header can lie."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from ollamapy.convert.safetensors import open_checkpoint, read_header
from ollamapy.errors import BadRequestError
from tests.convert.synth import safetensors_bytes, write_safetensors


def _tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {
        "a": rng.standard_normal((3, 5)).astype(np.float32),
        "b": rng.standard_normal(7).astype(np.float16),
        "c": rng.standard_normal((2, 2)).astype(np.float32),
        "ids": np.arange(4, dtype=np.int64),
    }


def test_round_trip_single_file(tmp_path: Path) -> None:
    tensors = _tensors()
    write_safetensors(tmp_path / "model.safetensors", tensors)
    ckpt = open_checkpoint(tmp_path)
    assert set(ckpt) == set(tensors)
    for name, want in tensors.items():
        got = ckpt.load(name)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    assert ckpt["a"].shape == (3, 5) and ckpt["a"].dtype == "F32" and ckpt["a"].nbytes == 60


def test_bf16_is_widened_exactly(tmp_path: Path) -> None:
    values = np.array([1.0, -2.5, 3.140625, 65280.0], dtype=np.float32)  # all exact in bf16
    write_safetensors(tmp_path / "model.safetensors", {"w": values}, bf16=frozenset({"w"}))
    got = open_checkpoint(tmp_path).load("w")
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, values)


def test_sharded_with_index(tmp_path: Path) -> None:
    tensors = _tensors()
    names = list(tensors)
    write_safetensors(
        tmp_path / "model-00001-of-00002.safetensors", {n: tensors[n] for n in names[:2]}
    )
    write_safetensors(
        tmp_path / "model-00002-of-00002.safetensors", {n: tensors[n] for n in names[2:]}
    )
    weight_map = {
        n: f"model-0000{1 if i < 2 else 2}-of-00002.safetensors" for i, n in enumerate(names)
    }
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    ckpt = open_checkpoint(tmp_path)
    np.testing.assert_array_equal(ckpt.load("c"), tensors["c"])
    assert ckpt["c"].path.name == "model-00002-of-00002.safetensors"


def test_sharded_without_index(tmp_path: Path) -> None:
    write_safetensors(tmp_path / "model-00001-of-00002.safetensors", {"x": np.ones(2, np.float32)})
    write_safetensors(tmp_path / "model-00002-of-00002.safetensors", {"y": np.zeros(3, np.float32)})
    assert set(open_checkpoint(tmp_path)) == {"x", "y"}


def test_index_naming_a_missing_shard(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"x": "gone.safetensors"}})
    )
    with pytest.raises(BadRequestError, match=r"gone\.safetensors"):
        open_checkpoint(tmp_path)


def test_index_cannot_escape_the_directory(tmp_path: Path) -> None:
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    write_safetensors(tmp_path / "outside.safetensors", {"x": np.ones(2, np.float32)})
    index = {"weight_map": {"x": "../outside.safetensors"}}
    (model_dir / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(BadRequestError, match="not in"):
        open_checkpoint(model_dir)


def test_duplicate_tensor_across_shards(tmp_path: Path) -> None:
    write_safetensors(tmp_path / "model-00001-of-00002.safetensors", {"x": np.ones(2, np.float32)})
    write_safetensors(tmp_path / "model-00002-of-00002.safetensors", {"x": np.ones(2, np.float32)})
    with pytest.raises(BadRequestError, match="more than one shard"):
        open_checkpoint(tmp_path)


def test_no_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(BadRequestError, match=r"no model\.safetensors"):
        open_checkpoint(tmp_path)


@pytest.mark.parametrize("claimed", [2**63, 2**40, 10_000])
def test_huge_header_length_is_refused_without_reading(tmp_path: Path, claimed: int) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", claimed) + b"{}")
    with pytest.raises(BadRequestError, match=f"claims {claimed} bytes but at most 2"):
        read_header(path)


def test_short_file(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"\x01\x02")
    with pytest.raises(BadRequestError, match="shorter than 8 bytes"):
        read_header(path)


def _with_header(path: Path, header: object, data: bytes = b"") -> Path:
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + data)
    return path


@pytest.mark.parametrize(
    ("header", "data", "message"),
    [
        ([1, 2], b"", "not a JSON object"),
        (
            {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}},
            b"\0" * 4,
            "run past the end",
        ),
        ({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8, "needs 12"),
        (
            {"w": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 8]}},
            b"\0" * 8,
            "unsupported dtype",
        ),
        (
            {"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}},
            b"\0" * 8,
            "invalid shape",
        ),
        (
            {"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}},
            b"\0" * 8,
            "run past the end",
        ),
        (
            {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0]}},
            b"\0" * 8,
            "invalid data_offsets",
        ),
        ({"w": "nope"}, b"", "not an object"),
    ],
)
def test_lying_headers(tmp_path: Path, header: object, data: bytes, message: str) -> None:
    path = _with_header(tmp_path / "model.safetensors", header, data)
    with pytest.raises(BadRequestError, match=message):
        read_header(path)


def test_header_that_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", 4) + b"\xff{{{")
    with pytest.raises(BadRequestError, match="corrupt safetensors header"):
        read_header(path)


def test_writer_matches_the_spec_layout() -> None:
    """Guard the test writer itself: header length prefix, JSON, then data in order."""
    blob = safetensors_bytes({"w": np.array([1.5], dtype=np.float32)})
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    assert header["w"] == {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}
    assert blob[8 + n :] == np.array([1.5], dtype="<f4").tobytes()
