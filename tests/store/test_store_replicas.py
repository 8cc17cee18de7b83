"""Several servers on one store directory: the lock between manifest writers and blob
removers, the half-model guard, the prune's grace for other servers' work in progress, and
the store's integrity check. Other processes stand in for the other servers."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

import pytest

import ollamapy.store.store as store_module
from ollamapy.errors import ModelNotFoundError
from ollamapy.store import (
    CONFIG_MEDIA_TYPE,
    Layer,
    Manifest,
    MediaType,
    MissingBlobsError,
    Store,
    StoreBusyError,
)
from ollamapy.store.files import TEMP_PREFIX
from ollamapy.store.integrity import check_store, main
from ollamapy.types import Digest, ModelName

BuildModel = Callable[..., Manifest]
NAME = ModelName.parse("me/shared:v1")


def _hold_shared(root: str, held: EventType, release: EventType) -> None:
    """Another server mid-commit: it holds the store lock shared until told to stop."""
    with Store(Path(root)).lock.shared():
        held.set()
        release.wait(30)


@contextmanager
def _other_server_holding_shared(root: Path) -> Iterator[EventType]:
    context = multiprocessing.get_context("spawn")
    held, release = context.Event(), context.Event()
    process = context.Process(target=_hold_shared, args=(str(root), held, release))
    process.start()
    try:
        assert held.wait(30), "the other process never took the lock"
        yield release
    finally:
        release.set()
        process.join(30)


def test_a_manifest_whose_blobs_are_missing_is_refused(
    store: Store, build_model: BuildModel
) -> None:
    manifest = build_model()
    store.blob_path(manifest.layers[0].digest).unlink()
    with pytest.raises(MissingBlobsError) as caught:
        store.write_manifest(NAME, manifest)
    assert caught.value.status_code == 400
    assert caught.value.missing == [str(manifest.layers[0].digest)]
    assert store.list_models() == []


def test_delete_waits_for_another_process_writing_a_manifest(
    store: Store, build_model: BuildModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.write_manifest(NAME, build_model())
    monkeypatch.setattr(store_module, "REMOVER_WAIT_S", 0.3)
    with _other_server_holding_shared(store.root):
        started = time.monotonic()
        with pytest.raises(StoreBusyError) as caught:
            store.delete(NAME)
        assert time.monotonic() - started >= 0.3
        assert caught.value.status_code == 503
        assert store.read_manifest(NAME)  # nothing was removed while it was busy
    assert store.delete(NAME)  # the other process let go: the delete goes through


def test_manifest_writers_do_not_wait_for_each_other(store: Store, build_model: BuildModel) -> None:
    manifest = build_model()
    with _other_server_holding_shared(store.root):
        store.write_manifest(NAME, manifest)
    assert store.read_manifest(NAME) == manifest


def test_threads_of_one_server_exclude_like_processes(store: Store) -> None:
    with store.lock.shared(), pytest.raises(StoreBusyError), store.lock.exclusive(0.05):
        pass
    with store.lock.exclusive(0.05):  # free again once the shared hold ended
        pass


def test_prune_grace_keeps_other_servers_fresh_files(store: Store) -> None:
    fresh_blob, _ = store.write_blob([b"just uploaded, create still to come"])
    old_blob, _ = store.write_blob([b"abandoned long ago"])
    fresh_temp = store.blobs_dir / f"{TEMP_PREFIX}growing"
    old_temp = store.blobs_dir / f"{TEMP_PREFIX}crashed"
    fresh_temp.write_bytes(b"x")
    old_temp.write_bytes(b"x")
    an_hour_ago = time.time() - 3600
    for path in (store.blob_path(old_blob), old_temp):
        os.utime(path, (an_hour_ago, an_hour_ago))

    removed = store.prune(grace_s=600)

    assert set(removed) == {store.blob_path(old_blob), old_temp}
    assert store.has_blob(fresh_blob)
    assert fresh_temp.exists()


def test_integrity_check_passes_a_whole_store(store: Store, build_model: BuildModel) -> None:
    store.write_manifest(NAME, build_model())
    (store.blobs_dir / f"{TEMP_PREFIX}leftover").write_bytes(b"not a problem")
    store.write_blob([b"an unreferenced blob is garbage, not damage"])
    assert check_store(store) == []
    assert main([str(store.root)]) == 0


@pytest.mark.parametrize("damage", ["missing", "corrupt", "unparsable-manifest"])
def test_integrity_check_finds_damage(
    store: Store, build_model: BuildModel, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = build_model()
    store.write_manifest(NAME, manifest)
    blob = store.blob_path(manifest.layers[0].digest)
    manifest_file = store.manifests_dir / "registry.ollama.ai/me/shared/v1"
    if damage == "missing":
        blob.unlink()
    elif damage == "corrupt":
        blob.write_bytes(b"GGUF weightz")  # same size, other bytes
    else:
        manifest_file.write_bytes(b"{not json")

    problems = check_store(store)

    assert len(problems) == 1
    assert problems[0].startswith("manifest registry.ollama.ai/me/shared/v1: ")
    assert ("unreadable" in problems[0]) == (damage == "unparsable-manifest")
    assert main([str(store.root)]) == 1
    assert "1 problem(s)" in capsys.readouterr().out


# ------------------------------------------- creates and deletes racing in two processes

ROUNDS = 200


def _create_repeatedly(root: str, seed: int, start: EventType) -> None:
    """What a create does, over and over: write the blobs, then the manifest. A refused
    manifest (the other process deleted a shared blob first) is a clean failure."""
    store = Store(Path(root))
    start.wait(30)
    for round_ in range(ROUNDS):
        layers = []
        for media_type, data in (
            (MediaType.MODEL, b"shared weights"),  # both creators and the deleter share it
            (MediaType.SYSTEM, b"system %d from %d" % (round_, seed)),
        ):
            digest, size = store.write_blob([data])
            layers.append(_layer(media_type, digest, size))
        config_digest, config_size = store.write_blob([b'{"seed":%d}' % seed])
        manifest = Manifest(_layer("config", config_digest, config_size), tuple(layers))
        try:
            store.write_manifest(NAME, manifest)
        except MissingBlobsError:
            continue


def _delete_until_stopped(root: str, start: EventType, stop: EventType) -> None:
    store = Store(Path(root))
    start.wait(30)
    while not stop.is_set():
        with contextlib.suppress(ModelNotFoundError):
            store.delete(NAME)


def _layer(media_type: str, digest: Digest, size: int) -> Layer:
    return Layer(CONFIG_MEDIA_TYPE if media_type == "config" else str(media_type), digest, size)


def test_creates_racing_creates_and_deletes_leave_a_consistent_store(store: Store) -> None:
    context = multiprocessing.get_context("spawn")
    start, stop = context.Event(), context.Event()
    root = str(store.root)
    creators = [
        context.Process(target=_create_repeatedly, args=(root, seed, start)) for seed in (1, 2)
    ]
    deleter = context.Process(target=_delete_until_stopped, args=(root, start, stop))
    for worker in (*creators, deleter):
        worker.start()
    start.set()
    seen: list[str] = []
    while any(worker.is_alive() for worker in creators):
        seen += check_store(store, hash_blobs=False)  # a half model must never be visible
    stop.set()
    for worker in (*creators, deleter):
        worker.join(30)
    assert seen == []
    assert [worker.exitcode for worker in (*creators, deleter)] == [0, 0, 0]
    assert check_store(store) == []
