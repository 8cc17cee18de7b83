"""What a runner settles before llama.cpp loads: the model's architecture from its GGUF
header, and OpenMP's idle spin for embedding models."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from ollamapy.runner.startup import (
    EMBEDDING_SPIN,
    gguf_architecture,
    quiet_openmp,
)


def gguf_head(arch: str, *, key: bytes = b"general.architecture", version: int = 3) -> bytes:
    """The start of a GGUF file whose first key/value is `key` = `arch` (a string)."""
    value = arch.encode()
    return (
        b"GGUF"
        + struct.pack("<IQQ", version, 0, 1)
        + struct.pack("<Q", len(key))
        + key
        + struct.pack("<IQ", 8, len(value))
        + value
    )


@pytest.mark.parametrize(
    ("data", "want"),
    [
        (gguf_head("bert"), "bert"),
        (gguf_head("llama") + b"\0" * 100, "llama"),
        (gguf_head("llama", version=2), "llama"),
        (gguf_head("bert", version=1), None),
        (gguf_head("bert", key=b"general.name"), None),
        (gguf_head("bert")[:40], None),
        (b"GGML" + gguf_head("bert")[4:], None),
        (b"", None),
    ],
    ids=["bert", "llama", "v2", "v1", "other-first-key", "truncated", "not-gguf", "empty"],
)
def test_gguf_architecture(tmp_path: Path, data: bytes, want: str | None) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(data)
    assert gguf_architecture(path) == want


def test_gguf_architecture_of_a_missing_file(tmp_path: Path) -> None:
    assert gguf_architecture(tmp_path / "absent.gguf") is None


@pytest.mark.parametrize(
    ("arch", "env", "want"),
    [
        ("bert", {}, {"GOMP_SPINCOUNT": EMBEDDING_SPIN}),
        ("llama", {}, {}),
        ("bert", {"GOMP_SPINCOUNT": "infinite"}, {"GOMP_SPINCOUNT": "infinite"}),
        ("bert", {"OMP_WAIT_POLICY": "active"}, {"OMP_WAIT_POLICY": "active"}),
    ],
    ids=["embedding-model", "generative-model", "user-spincount", "user-wait-policy"],
)
def test_quiet_openmp(tmp_path: Path, arch: str, env: dict[str, str], want: dict[str, str]) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(gguf_head(arch))
    quiet_openmp(env, path)
    assert env == want
