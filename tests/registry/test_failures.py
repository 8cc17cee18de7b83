"""Interrupted, corrupted, missing and hostile pulls: no half model is ever left."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from ollamapy.errors import ModelNotFoundError
from ollamapy.registry import (
    BlobDigestMismatchError,
    RegistryError,
    RegistryNotFoundError,
    TransferSettings,
    pull_model,
    push_model,
)
from ollamapy.store import InvalidManifestError, Store
from ollamapy.types import ModelName
from tests.registry.conftest import FAST, collect, files_under, make_model, options
from tests.registry.servers import Proxy

NO_RETRY = TransferSettings(**{**FAST.__dict__, "retries": 0})


def _range_starts(proxy: Proxy) -> list[int]:
    starts = []
    for request in proxy.script.blob_gets():
        value = request.headers.get("range", "")
        if value.startswith("bytes="):
            starts.append(int(value[len("bytes=") :].split("-")[0]))
    return starts


async def _pushed(proxy: Proxy, store: Store, repo: str) -> ModelName:
    name, _ = make_model(store, f"{proxy.host}/me/{repo}:v1")
    await collect(push_model(store, str(name), options()))
    proxy.script.log.clear()
    return name


async def test_interrupted_pull_resumes_with_range_and_verifies(
    proxy: Proxy, store: Store, other_store: Store
) -> None:
    name = await _pushed(proxy, store, "resume")
    proxy.script.cuts = [10_000] + [0] * 100  # one part gets somewhere, then all fail
    with pytest.raises(RegistryError, match=r"download of .* failed"):
        await collect(pull_model(other_store, str(name), options(settings=NO_RETRY)))
    with pytest.raises(ModelNotFoundError):
        other_store.read_manifest(name)
    records = [p for p in other_store.blobs_dir.iterdir() if "-partial-" in p.name]
    completed = [json.loads(p.read_text())["Completed"] for p in records]
    assert completed and any(c > 0 for c in completed)  # progress kept on disk

    proxy.script.cuts = []
    proxy.script.log.clear()
    await collect(pull_model(other_store, str(name), options(settings=NO_RETRY)))

    assert any(start % (64 * 1024) > 0 for start in _range_starts(proxy))  # resumed mid-part
    assert other_store.read_manifest_bytes(name) == store.read_manifest_bytes(name)
    for digest in other_store.read_manifest(name).digests:
        assert other_store.blob_path(digest).read_bytes() == store.blob_path(digest).read_bytes()
    assert not [p for p in other_store.blobs_dir.iterdir() if "partial" in p.name]


async def test_dropped_connection_is_retried_within_one_pull(
    proxy: Proxy, store: Store, other_store: Store
) -> None:
    name = await _pushed(proxy, store, "retry")
    proxy.script.cuts = [5_000]

    await collect(pull_model(other_store, str(name), options()))

    # whichever part the cut hit (parts race) continued 5,000 bytes past its own start
    assert any(start % (64 * 1024) == 5_000 for start in _range_starts(proxy))
    assert other_store.read_manifest_bytes(name) == store.read_manifest_bytes(name)


async def test_network_failure_gives_up_after_bounded_retries(
    proxy: Proxy, store: Store, other_store: Store
) -> None:
    name = await _pushed(proxy, store, "flaky")
    proxy.script.cuts = [0] * 1000  # every blob response dies before any byte

    with pytest.raises(RegistryError, match="failed"):
        await collect(pull_model(other_store, str(name), options()))

    per_part = len(proxy.script.blob_gets())
    assert 0 < per_part <= 64  # bounded: (retries + 1) per part, parts bounded
    with pytest.raises(ModelNotFoundError):
        other_store.read_manifest(name)


async def test_corrupted_blob_fails_and_leaves_nothing(
    proxy: Proxy, store: Store, other_store: Store
) -> None:
    name = await _pushed(proxy, store, "corrupt")
    proxy.script.corrupt_blobs = True

    with pytest.raises(BlobDigestMismatchError, match="digest mismatch"):
        await collect(pull_model(other_store, str(name), options()))

    with pytest.raises(ModelNotFoundError):
        other_store.read_manifest(name)
    assert other_store.list_models() == []
    manifest = store.read_manifest(name)
    assert not any(other_store.has_blob(layer.digest) for layer in manifest.layers[:1])
    assert not [p for p in files_under(other_store.blobs_dir) if "partial" in p.name]


async def test_unknown_model_is_ollamas_404(proxy: Proxy, other_store: Store) -> None:
    events = pull_model(other_store, f"{proxy.host}/me/nothing-here:v1", options())
    assert await anext(events) == {"status": "pulling manifest"}
    with pytest.raises(RegistryNotFoundError) as caught:
        await anext(events)
    assert caught.value.message == "pull model manifest: file does not exist"
    assert caught.value.status_code == 404
    assert files_under(other_store.root) == set()


@pytest.mark.parametrize(
    "digest", ["sha256:../../x", "sha256-" + "0" * 63 + "/", "../../../escape", 5]
)
async def test_hostile_manifest_writes_nothing(
    proxy: Proxy, other_store: Store, tmp_path: Path, digest: object
) -> None:
    proxy.script.manifest_override = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "x", "digest": "sha256:" + "a" * 64, "size": 2},
            "layers": [{"mediaType": "m", "digest": digest, "size": 10}],
        }
    ).encode()
    before = files_under(tmp_path)

    with pytest.raises(InvalidManifestError):
        await collect(pull_model(other_store, f"{proxy.host}/me/evil:v1", options()))

    assert files_under(tmp_path) == before
    assert not proxy.script.blob_gets()


async def test_oversized_manifest_is_refused(proxy: Proxy, other_store: Store) -> None:
    proxy.script.manifest_override = b" " * (4 * 1024 * 1024 + 1)
    with pytest.raises(RegistryError, match="larger than"):
        await collect(pull_model(other_store, f"{proxy.host}/me/huge:v1", options()))
    assert files_under(other_store.root) == set()


async def test_absurd_blob_size_is_refused_before_allocating(
    proxy: Proxy, other_store: Store
) -> None:
    proxy.script.manifest_override = json.dumps(
        {
            "schemaVersion": 2,
            "config": {"mediaType": "x", "digest": "sha256:" + "a" * 64, "size": 2},
            "layers": [{"mediaType": "m", "digest": "sha256:" + "b" * 64, "size": 2**62}],
        }
    ).encode()
    with pytest.raises(RegistryError, match="too large"):
        await collect(pull_model(other_store, f"{proxy.host}/me/huge-blob:v1", options()))
    assert not [p for p in files_under(other_store.root) if p.stat().st_size > 0]


async def test_concurrent_pulls_of_one_model_share_the_blobs(
    proxy: Proxy, store: Store, other_store: Store
) -> None:
    name = await _pushed(proxy, store, "twice")
    first, second = await asyncio.gather(
        collect(pull_model(other_store, str(name), options())),
        collect(pull_model(other_store, str(name), options())),
    )
    assert first[-1] == second[-1] == {"status": "success"}
    assert other_store.read_manifest_bytes(name) == store.read_manifest_bytes(name)
    assert not [p for p in other_store.blobs_dir.iterdir() if "partial" in p.name]
