"""Push to and pull from a real `docker-registry`: bytes, digests, events, skipping."""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import parse_qs

import pytest

from ollamapy.registry import RegistryError, pull_model, push_model
from ollamapy.store import Manifest, Store
from ollamapy.types import ModelName
from tests.registry.conftest import FAST, collect, make_model, options, statuses
from tests.registry.servers import Proxy, Registry


async def test_push_then_pull_round_trips_bytes(
    registry: Registry, proxy: Proxy, store: Store, other_store: Store
) -> None:
    name, manifest = make_model(store, f"{proxy.host}/me/round:v1")
    pushed = await collect(push_model(store, str(name), options()))
    assert statuses(pushed)[0] == "retrieving manifest"
    assert statuses(pushed)[-2:] == ["pushing manifest", "success"]
    model = manifest.layers[0]
    model_events = [e for e in pushed if e.get("digest") == str(model.digest)]
    assert model_events[0]["status"] == f"pushing {model.digest.short}"
    assert model_events[-1]["completed"] == model.size == model_events[-1]["total"]
    assert any(r.method == "PATCH" for r in proxy.script.log)  # 300 KB > 100 KiB chunks

    pulled = await collect(pull_model(other_store, str(name), options()))
    assert statuses(pulled)[0] == "pulling manifest"
    assert statuses(pulled)[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    assert other_store.read_manifest_bytes(name) == store.read_manifest_bytes(name)
    for digest in manifest.digests:
        assert other_store.blob_path(digest).read_bytes() == store.blob_path(digest).read_bytes()
    ranges = [r.headers.get("range") for r in proxy.script.blob_gets()]
    assert sum(1 for r in ranges if r and not r.startswith("bytes=0-")) >= 3  # parallel parts
    assert not list(other_store.blobs_dir.glob("*partial*"))


async def test_pull_skips_blobs_already_present(
    proxy: Proxy, store: Store, other_store: Store
) -> None:
    name, manifest = make_model(store, f"{proxy.host}/me/skip:v1")
    await collect(push_model(store, str(name), options()))
    model = manifest.layers[0]
    other_store.write_blob([store.blob_path(model.digest).read_bytes()])
    proxy.script.log.clear()

    events = await collect(pull_model(other_store, str(name), options()))

    fetched = {r.path.rsplit("/", 1)[-1] for r in proxy.script.blob_gets()}
    assert str(model.digest) not in fetched
    assert fetched == {str(d) for d in manifest.digests if d != model.digest}
    skipped = [e for e in events if e.get("digest") == str(model.digest)]
    assert skipped == [
        {
            "status": f"pulling {model.digest.short}",
            "digest": str(model.digest),
            "total": model.size,
            "completed": model.size,
        }
    ]


async def test_push_skips_blobs_the_registry_has(proxy: Proxy, store: Store) -> None:
    name, _ = make_model(store, f"{proxy.host}/me/again:v1")
    await collect(push_model(store, str(name), options()))
    proxy.script.log.clear()

    events = await collect(push_model(store, str(name), options()))

    methods = {r.method for r in proxy.script.log}
    assert methods == {"HEAD", "PUT"}  # existence checks and the manifest only
    assert all(e["completed"] == e["total"] for e in events if "digest" in e)


async def test_blob_redirects_are_followed_without_credentials(
    proxy: Proxy, second_proxy: Proxy, store: Store, other_store: Store
) -> None:
    name, manifest = make_model(store, f"{proxy.host}/me/cdn:v1")
    await collect(push_model(store, str(name), options()))
    proxy.script.require_token = True
    proxy.script.redirect_blobs = f"http://{second_proxy.host}"

    await collect(pull_model(other_store, str(name), options()))

    assert other_store.read_manifest_bytes(name) == store.read_manifest_bytes(name)
    redirected = second_proxy.script.blob_gets()
    assert {r.path.rsplit("/", 1)[-1] for r in redirected} == {str(d) for d in manifest.digests}
    assert all("authorization" not in r.headers for r in redirected)
    assert all("authorization" in r.headers for r in proxy.script.blob_gets()[-3:])


async def test_redirect_loops_are_bounded(proxy: Proxy, store: Store, other_store: Store) -> None:
    name, _ = make_model(store, f"{proxy.host}/me/loop:v1")
    await collect(push_model(store, str(name), options()))
    proxy.script.redirect_blobs = f"http://{proxy.host}"
    proxy.script.log.clear()

    with pytest.raises(RegistryError, match="too many redirects"):
        await collect(pull_model(other_store, str(name), options()))

    parts = -(-300_000 // FAST.max_part_size)
    assert 0 < len(proxy.script.blob_gets()) <= parts * (FAST.max_redirects + 1)
    assert not other_store.list_models()


async def test_push_mounts_layers_from_another_repository(proxy: Proxy, store: Store) -> None:
    source, manifest = make_model(store, f"{proxy.host}/me/base:v1")
    await collect(push_model(store, str(source), options()))
    derived = Manifest(
        manifest.config,
        tuple(replace(layer, from_=str(source)) for layer in manifest.layers),
    )
    target = ModelName.parse(f"{proxy.host}/me/derived:v1")
    store.write_manifest(target, derived)
    proxy.script.log.clear()

    await collect(push_model(store, str(target), options()))

    mounts = [r for r in proxy.script.log if r.method == "POST" and "mount=" in r.query]
    assert len(mounts) == len(manifest.layers)
    assert all("from=me%2Fbase" in r.query for r in mounts)
    assert not [r for r in proxy.script.log if r.method == "PATCH"]
    uploads = [r for r in proxy.script.log if r.method == "PUT" and "/blobs/" in r.path]
    assert [parse_qs(r.query)["digest"] for r in uploads] == [[str(manifest.config.digest)]]
