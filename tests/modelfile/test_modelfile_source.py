"""Classifying FROM values: blob digest, file, directory or model name."""

from __future__ import annotations

from pathlib import Path

import pytest

from ollamapy.modelfile import FromKind, blob_digest, classify_from, looks_like_path

HEX = "ab" * 32


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (f"@sha256:{HEX}", HEX),
        (f"sha256:{HEX}", HEX),
        (f"sha256-{HEX}", None),
        (f"sha256:{HEX[:-1]}", None),
        (f"sha256:{HEX.upper()}", None),
        ("llama3.2", None),
    ],
    ids=["at-prefixed", "bare", "filename-form", "short", "uppercase", "name"],
)
def test_blob_digest(value: str, expected: str | None) -> None:
    digest = blob_digest(value)
    assert (digest.hex if digest else None) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/abs/model.gguf", True),
        ("./model.gguf", True),
        ("../model.gguf", True),
        ("~/model.gguf", True),
        ("~", True),
        (".", True),
        ("model.gguf", False),
        ("llama3.2:latest", False),
        ("hf.co/user/repo", False),
    ],
    ids=["absolute", "dot", "dotdot", "home", "tilde", "cwd", "bare-file", "name", "hf-name"],
)
def test_looks_like_path(value: str, expected: bool) -> None:
    assert looks_like_path(value) is expected


@pytest.fixture
def base(tmp_path: Path) -> Path:
    """A Modelfile directory holding a GGUF file and a Safetensors directory."""
    base = tmp_path / "project"
    (base / "weights").mkdir(parents=True)
    (base / "model.gguf").write_bytes(b"GGUF")
    return base


@pytest.mark.parametrize(
    ("value", "kind", "relative"),
    [
        (f"@sha256:{HEX}", FromKind.BLOB, None),
        ("./model.gguf", FromKind.FILE, "model.gguf"),
        ("model.gguf", FromKind.FILE, "model.gguf"),
        ("./missing.gguf", FromKind.FILE, "missing.gguf"),
        ("weights", FromKind.DIRECTORY, "weights"),
        ("./weights/", FromKind.DIRECTORY, "weights"),
        ("../project/model.gguf", FromKind.FILE, "model.gguf"),
        ("llama3.2", FromKind.MODEL, None),
        ("missing.gguf", FromKind.MODEL, None),
        ("library/llama3.2:1b", FromKind.MODEL, None),
    ],
    ids=[
        "blob",
        "explicit-relative-file",
        "existing-bare-file",
        "missing-explicit-file",
        "existing-directory",
        "explicit-directory",
        "parent-relative",
        "model-name",
        "missing-bare-file-is-a-name",
        "namespaced-name",
    ],
)
def test_classify_from(base: Path, value: str, kind: FromKind, relative: str | None) -> None:
    source = classify_from(value, base)
    assert source.kind is kind
    assert source.value == value
    assert source.path == (base / relative if relative else None)
    assert (source.digest is not None) is (kind is FromKind.BLOB)


def test_classify_absolute_path_ignores_base(base: Path, tmp_path: Path) -> None:
    source = classify_from(str(base / "model.gguf"), tmp_path / "elsewhere")
    assert (source.kind, source.path) == (FromKind.FILE, base / "model.gguf")


def test_classify_expands_home(hermetic_env: Path, base: Path) -> None:
    (hermetic_env / "home.gguf").write_bytes(b"GGUF")
    source = classify_from("~/home.gguf", base)
    assert (source.kind, source.path) == (FromKind.FILE, hermetic_env / "home.gguf")
