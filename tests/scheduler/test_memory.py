"""Memory estimates from GGUF metadata, and reading free memory, without loading a model."""

from __future__ import annotations

from pathlib import Path

import pytest

from ollamapy.gguf import read_gguf
from ollamapy.scheduler.memory import (
    GIB,
    MIB,
    GGUFEstimator,
    InsufficientMemoryError,
    MemoryPool,
    MemorySnapshot,
    ModelShape,
    estimate_memory,
    kv_cache_bytes,
    parse_meminfo,
    parse_nvidia_smi,
    probe_memory,
    read_shape,
)
from ollamapy.scheduler.scheduler import ModelLoad
from ollamapy.types import RunnerOptions
from tests.conftest import bundled_model_file

SHAPE = ModelShape(
    file_size=100 * MIB, n_layer=30, n_head=9, n_head_kv=3, key_length=64, value_length=64
)


def test_kv_cache_follows_the_formula() -> None:
    # 2 (K and V) x layers x tokens x kv heads x head dim x 2 bytes (f16)
    expected = 2 * 30 * (2048 * 4) * 3 * 64 * 2
    assert kv_cache_bytes(SHAPE, 2048, 4) == expected


@pytest.mark.parametrize(("cache_type", "ratio"), [("q8_0", 1.0625 / 2), ("q4_0", 0.5625 / 2)])
def test_quantized_kv_cache_is_smaller(cache_type: str, ratio: float) -> None:
    f16 = kv_cache_bytes(SHAPE, 4096, 1)
    assert kv_cache_bytes(SHAPE, 4096, 1, cache_type) == int(f16 * ratio)


def test_estimate_grows_with_parallel_sequences() -> None:
    one = estimate_memory(SHAPE, num_ctx=4096, num_parallel=1)
    four = estimate_memory(SHAPE, num_ctx=4096, num_parallel=4)
    assert one.weights == four.weights == 100 * MIB
    assert four.kv_cache == 4 * one.kv_cache
    assert four.total > one.total > one.weights


@pytest.mark.integration
def test_shape_from_real_gguf_uses_key_and_value_length() -> None:
    smol = ModelShape.from_gguf(read_gguf(bundled_model_file("smollm2")))
    assert (smol.n_layer, smol.n_head, smol.n_head_kv) == (30, 9, 3)
    assert smol.key_length == smol.value_length == 576 // 9  # embedding / heads
    assert smol.n_vocab == 49152
    gemma = ModelShape.from_gguf(read_gguf(bundled_model_file("gemma3")))
    assert (gemma.key_length, gemma.value_length) == (256, 256)  # explicit keys win
    assert gemma.n_head_kv == 1


def test_unreadable_model_counts_by_file_size(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 60)
    assert read_shape(bad) == ModelShape(file_size=64)
    assert read_shape(tmp_path / "missing").file_size == 0


@pytest.mark.integration
def test_gguf_estimator_uses_the_load_options() -> None:
    path = bundled_model_file("smollm2")
    load = ModelLoad("m", path, "sha256:m", RunnerOptions(num_ctx=2048))
    estimate = GGUFEstimator("q8_0")(load, 2)
    shape = read_shape(path)
    assert estimate.weights == path.stat().st_size
    assert estimate.kv_cache == kv_cache_bytes(shape, 2048, 2, "q8_0")


def test_gguf_estimator_counts_the_vision_projector(tmp_path: Path) -> None:
    model, projector = tmp_path / "model.gguf", tmp_path / "mmproj.gguf"
    model.write_bytes(b"GGUF" + b"\0" * 60)
    projector.write_bytes(b"\0" * 1000)
    plain = ModelLoad("m", model, "sha256:m", RunnerOptions(num_ctx=2048))
    vision = ModelLoad("m", model, "sha256:m", RunnerOptions(num_ctx=2048), projectors=(projector,))
    estimator = GGUFEstimator()
    assert estimator(vision, 1).weights == estimator(plain, 1).weights + 1000


def test_parse_meminfo() -> None:
    text = "MemTotal:       24684096 kB\nMemFree:  1000 kB\nMemAvailable:   23579568 kB\n"
    assert parse_meminfo(text) == MemoryPool(24684096 * 1024, 23579568 * 1024)


def test_parse_nvidia_smi() -> None:
    assert parse_nvidia_smi("81559, 80000\n40960, 1024\n") == (
        MemoryPool(81559 * MIB, 80000 * MIB),
        MemoryPool(40960 * MIB, 1024 * MIB),
    )
    assert parse_nvidia_smi("No devices were found\n") == ()


def test_snapshot_adds_gpu_memory_and_probe_is_injectable() -> None:
    snapshot = probe_memory(lambda: MemoryPool(8 * GIB, 4 * GIB), lambda: (MemoryPool(GIB, GIB),))
    assert snapshot == MemorySnapshot(MemoryPool(8 * GIB, 4 * GIB), (MemoryPool(GIB, GIB),))
    assert (snapshot.total, snapshot.available, snapshot.vram_available) == (9 * GIB, 5 * GIB, GIB)


def test_insufficient_memory_message_reads_like_ollama() -> None:
    error = InsufficientMemoryError(12 * GIB + GIB // 2, 8 * GIB)
    assert str(error) == "model requires more system memory (12.5 GiB) than is available (8.0 GiB)"
    assert error.status_code == 500
