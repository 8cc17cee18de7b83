"""Deleting models and pruning blobs: shared blobs survive, partial downloads survive."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from ollamapy.errors import ModelNotFoundError
from ollamapy.store import Manifest, MediaType, Store
from ollamapy.types import Digest, ModelName

BuildModel = Callable[..., Manifest]
SHARED = b"shared weights"


def _names(directory: Path) -> set[str]:
    return set(os.listdir(directory)) if directory.exists() else set()


def _two_models(store: Store, build_model: BuildModel) -> tuple[Manifest, Manifest]:
    """`a` and `b` share the weights blob; each has its own template and config."""
    a = build_model({MediaType.MODEL: SHARED, MediaType.TEMPLATE: b"A"}, config=b'{"a":1}')
    b = build_model({MediaType.MODEL: SHARED, MediaType.TEMPLATE: b"B"}, config=b'{"b":1}')
    store.write_manifest(ModelName.parse("a"), a)
    store.write_manifest(ModelName.parse("me/b:v1"), b)
    return a, b


def test_delete_prunes_only_unshared_blobs(store: Store, build_model: BuildModel) -> None:
    a, b = _two_models(store, build_model)
    removed = store.delete(ModelName.parse("A:LATEST"))
    assert set(removed) == a.digests - b.digests
    assert all(store.has_blob(digest) for digest in b.digests)
    assert not any(store.has_blob(digest) for digest in a.digests - b.digests)
    assert [entry.name.display for entry in store.list_models()] == ["me/b:v1"]
    assert _names(store.manifests_dir / "registry.ollama.ai") == {"me"}


def test_delete_with_noprune_keeps_blobs(store: Store, build_model: BuildModel) -> None:
    a, _ = _two_models(store, build_model)
    assert store.delete(ModelName.parse("a"), noprune=True) == []
    assert all(store.has_blob(digest) for digest in a.digests)


def test_delete_last_model_removes_everything(store: Store, build_model: BuildModel) -> None:
    a = build_model()
    store.write_manifest(ModelName.parse("host.example/ns/m:t"), a)
    assert set(store.delete(ModelName.parse("host.example/ns/m:t"))) == a.digests
    assert _names(store.blobs_dir) == set()
    assert _names(store.manifests_dir) == set()
    assert store.manifests_dir.is_dir()


def test_delete_missing_model(store: Store) -> None:
    with pytest.raises(ModelNotFoundError):
        store.delete(ModelName.parse("ghost"))


def test_copy_then_delete_source_keeps_shared_blobs(store: Store, build_model: BuildModel) -> None:
    manifest = build_model()
    store.write_manifest(ModelName.parse("src"), manifest)
    store.copy(ModelName.parse("src"), ModelName.parse("dst"))
    assert store.delete(ModelName.parse("src")) == []
    assert all(store.has_blob(digest) for digest in manifest.digests)
    assert store.read_manifest(ModelName.parse("dst")) == manifest


def test_corrupt_manifest_still_protects_its_blobs(store: Store, build_model: BuildModel) -> None:
    _, b = _two_models(store, build_model)
    corrupt = store.manifests_dir / "registry.ollama.ai/me/b/v1"
    corrupt.write_bytes(corrupt.read_bytes()[:-20])  # truncated, no longer parses
    store.delete(ModelName.parse("a"))
    assert all(store.has_blob(digest) for digest in b.digests)


def test_prune_at_start(store: Store, build_model: BuildModel) -> None:
    a, _ = _two_models(store, build_model)
    orphan, _ = store.write_blob([b"orphan"])
    partial_digest = Digest.of_bytes(b"downloading")
    partials = [store.partial_path(partial_digest), store.partial_path(partial_digest, "-0")]
    for path in partials:
        path.write_bytes(b"half")
    junk = [store.blobs_dir / ".tmp-crashed", store.blobs_dir / "sha256-123456"]
    manifest_junk = store.manifests_dir / "registry.ollama.ai/library/a/.tmp-x"
    for path in (*junk, manifest_junk):
        path.write_bytes(b"junk")
    empty_dir = store.manifests_dir / "registry.ollama.ai/old/gone"
    empty_dir.mkdir(parents=True)

    removed = store.prune()

    assert set(removed) == {*junk, manifest_junk, store.blob_path(orphan)}
    assert all(path.exists() for path in partials)
    assert all(store.has_blob(digest) for digest in a.digests)
    assert not store.has_blob(orphan)
    assert not (store.manifests_dir / "registry.ollama.ai/old").exists()
    assert len(store.list_models()) == 2


def test_cleanup_temp_never_touches_blobs(store: Store, build_model: BuildModel) -> None:
    orphan, _ = store.write_blob([b"orphan"])
    (store.blobs_dir / ".tmp-crashed").write_bytes(b"x")
    assert store.cleanup_temp() == [store.blobs_dir / ".tmp-crashed"]
    assert store.has_blob(orphan)


def test_prune_on_empty_root(store: Store) -> None:
    assert store.prune() == []


def test_remove_unreferenced_spares_referenced(store: Store, build_model: BuildModel) -> None:
    a, _ = _two_models(store, build_model)
    orphan, _ = store.write_blob([b"failed create leftover"])
    assert store.remove_unreferenced({orphan, *a.digests}) == [orphan]
    assert all(store.has_blob(digest) for digest in a.digests)
