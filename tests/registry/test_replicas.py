"""Two server processes sharing one store pull and delete the same model at once (what
replicas behind a load balancer do): every pull succeeds, every delete succeeds or finds
nothing, no half model is ever visible, and the store passes its integrity check after."""

from __future__ import annotations

import asyncio
import fcntl
import json
import multiprocessing
import os
import threading
from collections.abc import Callable
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

import httpx

from ollamapy.registry import pull_model, push_model
from ollamapy.store import CONFIG_MEDIA_TYPE, Layer, Manifest, MediaType, Store
from ollamapy.store.integrity import check_store
from ollamapy.types import ModelName
from tests.processes import server_processes
from tests.registry.conftest import collect, options
from tests.registry.servers import Registry

ROUNDS = 6


def _model(store: Store, name: str) -> ModelName:
    """A 2 MiB random weights blob (several ranged parts), a template and a config."""
    layers = []
    for media_type, data in ((MediaType.MODEL, os.urandom(2 << 20)), (MediaType.TEMPLATE, b"T")):
        digest, size = store.write_blob([data])
        layers.append(Layer(str(media_type), digest, size))
    config_digest, config_size = store.write_blob([b'{"model_format":"gguf"}'])
    manifest = Manifest(Layer(CONFIG_MEDIA_TYPE, config_digest, config_size), tuple(layers))
    model = ModelName.parse(name)
    store.write_manifest(model, manifest)
    return model


def _pull(url: str, name: str) -> str:
    """The pull's last status, or its error."""
    body = {"model": name, "insecure": True}
    with httpx.stream("POST", f"{url}/api/pull", json=body, timeout=60) as response:
        assert response.status_code == 200, response.read()
        last = [json.loads(line) for line in response.iter_lines() if line][-1]
    return str(last.get("error") or last["status"])


def _delete(url: str, name: str) -> str:
    response = httpx.request("DELETE", f"{url}/api/delete", json={"model": name}, timeout=60)
    return str(response.status_code)


def _race(jobs: list[Callable[[], str]]) -> list[str]:
    """Run the jobs at the same moment in threads; their results in order."""
    results = [""] * len(jobs)
    barrier = threading.Barrier(len(jobs))

    def run(index: int) -> None:
        barrier.wait()
        results[index] = jobs[index]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results


def test_two_servers_pulling_and_deleting_one_model_keep_the_store_whole(
    registry: Registry, store: Store, tmp_path: Path
) -> None:
    name = _model(store, f"{registry.host}/me/replicated:v1")
    asyncio.run(collect(push_model(store, str(name), options())))
    shared = Store(tmp_path / "shared-models")
    seen: list[str] = []
    stop = threading.Event()

    def watch() -> None:  # what any client could see at any moment: whole models only
        while not stop.is_set():
            seen.extend(check_store(shared, hash_blobs=False))

    with server_processes(2, tmp_path, shared.root) as (a, b):
        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            outcomes = [
                _race(
                    [
                        lambda: _pull(a.url, str(name)),
                        lambda: _pull(b.url, str(name)),
                        lambda: _delete(a.url, str(name)),
                        lambda: _delete(b.url, str(name)),
                    ]
                )
                for _ in range(ROUNDS)
            ]
            final = _race([lambda: _pull(a.url, str(name)), lambda: _pull(b.url, str(name))])
        finally:
            stop.set()
            watcher.join(60)

    for pulls_a, pulls_b, deletes_a, deletes_b in outcomes:
        assert (pulls_a, pulls_b) == ("success", "success")
        assert {deletes_a, deletes_b} <= {"200", "404"}
    assert final == ["success", "success"]
    assert seen == []
    assert check_store(shared) == []
    assert shared.read_manifest_bytes(name) == store.read_manifest_bytes(name)
    left = [p.name for p in shared.blobs_dir.iterdir() if "partial" in p.name or "tmp" in p.name]
    assert left == []  # no download or temp file left behind


def _hold_partial(path: str, held: EventType, release: EventType) -> None:
    """Another server downloading a blob: it holds the partial file's lock."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    held.set()
    release.wait(60)
    os.close(fd)


async def test_a_pull_waits_for_another_servers_download_and_shows_its_progress(
    registry: Registry, store: Store, other_store: Store
) -> None:
    name = _model(store, f"{registry.host}/me/waited:v1")
    await collect(push_model(store, str(name), options()))
    weights = store.read_manifest(name).layers[0]
    other_store.blobs_dir.mkdir(parents=True)
    record = {"N": 0, "Offset": 0, "Size": weights.size, "Completed": 12345}
    other_store.partial_path(weights.digest, "-0").write_text(json.dumps(record))
    context = multiprocessing.get_context("spawn")
    held, release = context.Event(), context.Event()
    partial = str(other_store.partial_path(weights.digest))
    holder = context.Process(target=_hold_partial, args=(partial, held, release))
    holder.start()
    try:
        assert held.wait(30)
        events = pull_model(other_store, str(name), options())
        waiting = []
        async with asyncio.timeout(20):  # progress events come while it waits
            async for event in events:
                if event.get("digest") == str(weights.digest):
                    waiting.append(event)
                if len(waiting) == 3:  # still waiting: the other download holds the file
                    break
        assert not other_store.has_blob(weights.digest)
        assert [e.get("completed") for e in waiting] == [12345] * 3
        release.set()
        rest = [event async for event in events]  # the other one stopped: this one pulls
    finally:
        release.set()
        holder.join(30)
    assert rest[-1] == {"status": "success"}
    assert check_store(other_store) == []
