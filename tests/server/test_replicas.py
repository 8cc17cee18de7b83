"""Two server processes on one store create and delete the same model at once: each create
succeeds or fails cleanly (its blobs went with a delete on the other server), each delete
succeeds or finds nothing, and the store is whole throughout and after."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import httpx

from ollamapy.store import Store
from ollamapy.store.integrity import check_store
from tests.ggufs import write_tiny_gguf
from tests.processes import server_processes

ROUNDS = 8
NAME = "me/contested:v1"


def _create(url: str, gguf: Path, system: str) -> str:
    """The create's last status, or its error."""
    body = {"model": NAME, "modelfile": f'FROM {gguf}\nSYSTEM "{system}"'}
    with httpx.stream("POST", f"{url}/api/create", json=body, timeout=60) as response:
        if response.status_code != 200:
            return f"status {response.status_code}"
        last = [json.loads(line) for line in response.iter_lines() if line][-1]
    return str(last.get("error") or last["status"])


def _delete(url: str) -> str:
    response = httpx.request("DELETE", f"{url}/api/delete", json={"model": NAME}, timeout=60)
    return str(response.status_code)


def _race(jobs: list[Callable[[], str]]) -> list[str]:
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


def test_creates_and_deletes_of_one_model_on_two_servers(tmp_path: Path) -> None:
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf")
    store = Store(tmp_path / "shared-models")
    seen: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.extend(check_store(store, hash_blobs=False))

    with server_processes(2, tmp_path, store.root) as (a, b):
        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            rounds = [
                _race(
                    [
                        lambda: _create(a.url, gguf, "from a"),
                        lambda: _create(b.url, gguf, "from b"),
                        lambda: _delete(a.url),
                        lambda: _delete(b.url),
                    ]
                )
                for _ in range(ROUNDS)
            ]
            last = _create(b.url, gguf, "last")
            shown = httpx.post(f"{a.url}/api/show", json={"model": NAME}, timeout=30).json()
        finally:
            stop.set()
            watcher.join(60)

    incomplete = "the model's files are incomplete"
    for create_a, create_b, delete_a, delete_b in rounds:
        for outcome in (create_a, create_b):
            assert outcome == "success" or outcome.endswith(incomplete), outcome
        assert {delete_a, delete_b} <= {"200", "404"}
    assert last == "success"
    assert shown["system"] == "last"  # the other server sees the model whole
    assert seen == []
    assert check_store(store) == []
