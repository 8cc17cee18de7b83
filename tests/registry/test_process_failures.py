"""Failures outside one pull's control: the pulling server is killed mid-download (the
next pull resumes what reached the disk), and the registry host is unreachable."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ollamapy.registry import RegistryError, RegistryOptions, pull_model, push_model
from ollamapy.store import CONFIG_MEDIA_TYPE, Layer, Manifest, MediaType, Store
from ollamapy.types import ModelName
from tests.registry.conftest import collect, options
from tests.registry.servers import Proxy, free_port, wait_until_up

REPO = Path(__file__).resolve().parents[2]
WEIGHTS_SIZE = 8 * 1024 * 1024


def _random_model(store: Store, name: str) -> tuple[ModelName, Manifest]:
    """An 8 MiB random weights blob (incompressible, one default-sized part) and a config."""
    digest, size = store.write_blob([os.urandom(WEIGHTS_SIZE)])
    config_digest, config_size = store.write_blob([b'{"model_format":"gguf"}'])
    manifest = Manifest(
        Layer(CONFIG_MEDIA_TYPE, config_digest, config_size),
        (Layer(str(MediaType.MODEL), digest, size),),
    )
    model = ModelName.parse(name)
    store.write_manifest(model, manifest)
    return model, manifest


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen[bytes]]]:
    """`python -m ollamapy serve` in its own process, on a free port and a fresh store."""
    models = tmp_path / "server-models"
    port = free_port()
    env = {**os.environ, "OLLAMA_HOST": f"127.0.0.1:{port}", "OLLAMA_MODELS": str(models)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "ollamapy", "serve"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/api/version", deadline_s=60)
        yield f"http://127.0.0.1:{port}", models, process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        log.close()


def _completed(record: Path) -> int:
    try:
        return int(json.loads(record.read_text())["Completed"])
    except (OSError, ValueError, KeyError):
        return 0


def test_server_killed_mid_pull_resumes_in_the_next_pull(
    proxy: Proxy,
    store: Store,
    server_process: tuple[str, Path, subprocess.Popen[bytes]],
) -> None:
    url, models, process = server_process
    name, manifest = _random_model(store, f"{proxy.host}/me/killed:v1")
    asyncio.run(collect(push_model(store, str(name), options())))
    weights = manifest.layers[0]
    proxy.script.log.clear()
    proxy.script.slow_blobs = 0.002  # ~2 MB/s: seconds for 8 MiB, time to kill it

    with httpx.stream(
        "POST", f"{url}/api/pull", json={"model": str(name), "insecure": True}, timeout=60
    ) as response:
        assert response.status_code == 200
        pulled = Store(models)
        record = pulled.partial_path(weights.digest, "-0")
        deadline = time.monotonic() + 30
        for line in response.iter_lines():  # bounded by the pull itself and the deadline
            event = json.loads(line)
            assert "error" not in event, event
            if _completed(record) > 0:
                break
            assert time.monotonic() < deadline, "no progress on disk"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

    assert process.returncode == -signal.SIGKILL
    saved = _completed(record)
    assert 0 < saved < weights.size
    assert not pulled.has_blob(weights.digest)
    assert not pulled.list_models()
    first_gets = [r for r in proxy.script.blob_gets() if r.path.endswith(str(weights.digest))]
    assert first_gets[0].headers["range"] == f"bytes=0-{weights.size - 1}"

    proxy.script.slow_blobs = 0
    proxy.script.log.clear()
    events = asyncio.run(collect(pull_model(pulled, str(name), RegistryOptions(insecure=True))))

    assert events[-1] == {"status": "success"}
    resumed = [r for r in proxy.script.blob_gets() if r.path.endswith(str(weights.digest))]
    assert resumed[0].headers["range"] == f"bytes={saved}-{weights.size - 1}"
    assert pulled.read_manifest_bytes(name) == store.read_manifest_bytes(name)
    assert (
        pulled.blob_path(weights.digest).read_bytes()
        == store.blob_path(weights.digest).read_bytes()
    )
    assert not list(pulled.blobs_dir.glob("*partial*"))


async def test_unreachable_registry_fails_fast_with_a_clear_error(other_store: Store) -> None:
    host = f"127.0.0.1:{free_port()}"  # bound once, released: closed
    started = time.monotonic()
    with pytest.raises(RegistryError) as caught:
        await collect(pull_model(other_store, f"{host}/me/away:v1", RegistryOptions(insecure=True)))
    elapsed = time.monotonic() - started

    assert elapsed < 5, f"took {elapsed:.1f}s"  # default settings: a few quick retries only
    message = caught.value.message
    assert message == f"pull model manifest: could not connect to {host}: connection refused"
    assert caught.value.transient
    assert not [p for p in other_store.root.rglob("*") if p.is_file()]


async def test_unreachable_registry_push_fails_fast(store: Store) -> None:
    host = f"127.0.0.1:{free_port()}"  # bound once, released: closed
    name, _ = _random_model(store, f"{host}/me/away:v1")
    started = time.monotonic()
    with pytest.raises(RegistryError, match=f"^could not connect to {host}: connection refused$"):
        await collect(push_model(store, str(name), RegistryOptions(insecure=True)))
    assert time.monotonic() - started < 5
