"""Fixtures for store tests: an empty store under tmp_path and a blob/manifest builder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ollamapy.store import CONFIG_MEDIA_TYPE, Layer, Manifest, MediaType, Store

BuildModel = Callable[..., Manifest]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "models")


@pytest.fixture
def build_model(store: Store) -> BuildModel:
    """Write blobs for `layers` (media type -> text) plus a config blob; return the manifest."""

    def build(layers: dict[str, bytes] | None = None, config: bytes = b"{}") -> Manifest:
        written = []
        for media_type, data in (layers or {MediaType.MODEL: b"GGUF weights"}).items():
            digest, size = store.write_blob([data])
            written.append(Layer(str(media_type), digest, size))
        config_digest, config_size = store.write_blob([config])
        return Manifest(Layer(CONFIG_MEDIA_TYPE, config_digest, config_size), tuple(written))

    return build
