"""`deploy/haproxy.cfg`, as shipped, in front of three replicas sharing one store.

Debian's HAProxy runs the file with only its `bind` and `server` lines pointed at loopback
ports; the replicas are real servers in their own processes whose runners are scripted
(`tests/deploy/scripted_replica.py`: each answer names its replica and streams slowly).
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from ollamapy.store import Store
from ollamapy.store.integrity import check_store
from tests.ggufs import write_tiny_gguf
from tests.processes import REPO, ServerProcess, server_processes
from tests.registry.servers import free_port

CONFIG = REPO / "deploy" / "haproxy.cfg"
REPLICA = ("-m", "tests.deploy.scripted_replica")
MODELS = [f"model{n}" for n in range(8)]
CLIENTS = 16
REQUESTS_PER_CLIENT = 3


def lb_config(port: int, replicas: list[ServerProcess]) -> str:
    """The shipped config with its listener and server list pointed at this test's ports."""
    text = CONFIG.read_text()
    text, binds = re.subn(r"(?m)^(\s+)bind :11434$", rf"\1bind 127.0.0.1:{port}", text)
    servers = "".join(
        f"    server replica{n} 127.0.0.1:{replica.port}\n" for n, replica in enumerate(replicas)
    )
    text, lists = re.subn(r"(?m)(^\s+server replica\d+ .*\n)+", servers, text)
    assert (binds, lists) == (1, 1), "the shipped config no longer has the expected shape"
    return text


@contextmanager
def haproxy(workdir: Path, replicas: list[ServerProcess]) -> Iterator[str]:
    binary = shutil.which("haproxy")
    if binary is None:
        pytest.fail("haproxy is missing: install it with `apt-get install haproxy`")
    port = free_port()
    config = workdir / "haproxy.cfg"
    config.write_text(lb_config(port, replicas))
    with (workdir / "haproxy.log").open("wb") as log:
        process = subprocess.Popen([binary, "-db", "-f", str(config)], stdout=log, stderr=log)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 15
            while not _answers(url):
                assert process.poll() is None, (workdir / "haproxy.log").read_text()
                assert time.monotonic() < deadline, "haproxy did not come up"
                time.sleep(0.05)
            yield url
        finally:
            process.terminate()
            process.wait(10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def create_models(url: str, workdir: Path) -> None:
    gguf = write_tiny_gguf(workdir / "tiny.gguf")
    for name in MODELS:
        body = {"model": name, "modelfile": f"FROM {gguf}", "stream": False}
        response = httpx.post(f"{url}/api/create", json=body, timeout=60)
        assert response.status_code == 200, response.text


def generate(url: str, model: str) -> tuple[str, list[float]]:
    """Stream one generation; (the replica that answered, arrival time of each line).
    Raises for a cut stream or an error status: what a client sees when a replica dies."""
    body = {"model": model, "prompt": "hi"}
    arrivals, text = [], ""
    with httpx.stream("POST", f"{url}/api/generate", json=body, timeout=30) as response:
        if response.status_code != 200:
            raise httpx.HTTPStatusError("error", request=response.request, response=response)
        for line in response.iter_lines():
            arrivals.append(time.monotonic())
            event = json.loads(line)
            assert "error" not in event, event
            text += event.get("response", "")
            if event.get("done"):
                return text.split()[0], arrivals
    raise httpx.RemoteProtocolError("stream ended without its final object")


def routing(url: str) -> dict[str, str]:
    """Which replica answers each model (asked twice: it must be the same both times)."""

    def owner(model: str) -> str:
        first, second = generate(url, model)[0], generate(url, model)[0]
        assert first == second, f"{model} moved between {first} and {second}"
        return first

    with ThreadPoolExecutor(len(MODELS)) as pool:
        return dict(zip(MODELS, pool.map(owner, MODELS), strict=True))


def test_three_replicas_behind_haproxy_survive_a_replica_killed_mid_run(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "models")
    with server_processes(3, tmp_path, store.root, REPLICA) as replicas:
        create_models(replicas[0].url, tmp_path)
        with haproxy(tmp_path, replicas) as lb:
            assert httpx.get(lb, timeout=5).text == "Ollama is running"
            listed = httpx.get(f"{lb}/api/tags", timeout=10).json()["models"]
            assert sorted(m["name"] for m in listed) == [f"{m}:latest" for m in MODELS]

            owners = routing(lb)
            assert len(set(owners.values())) >= 2, "every model went to one replica"
            for spelling in ("MODEL3", "model3:latest", "registry.ollama.ai/library/model3"):
                assert generate(lb, spelling)[0] == owners["model3"], spelling
            _, arrivals = generate(lb, MODELS[0])
            assert arrivals[-1] - arrivals[0] > 0.1, "the stream arrived in one piece"

            victim_name = Counter(owners.values()).most_common(1)[0][0]
            victim = next(r for r in replicas if victim_name == f"replica-{r.port}")
            outcomes: Counter[str] = Counter()
            lock = threading.Lock()

            def client(index: int) -> None:
                for round_ in range(REQUESTS_PER_CLIENT):
                    model = MODELS[(index + round_) % len(MODELS)]
                    try:
                        generate(lb, model)
                        outcome = "completed"
                    except httpx.HTTPStatusError as exc:
                        outcome = f"status {exc.response.status_code}"
                    except httpx.TransportError:
                        outcome = "stream cut"
                    with lock:
                        outcomes[outcome] += 1

            threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
            started = time.monotonic()
            for thread in threads:
                thread.start()
            time.sleep(0.5)  # every client has a request in flight
            victim.process.send_signal(signal.SIGKILL)
            for thread in threads:
                thread.join(60)
            assert not any(thread.is_alive() for thread in threads), "a request hung"
            elapsed = time.monotonic() - started

            assert sum(outcomes.values()) == CLIENTS * REQUESTS_PER_CLIENT
            assert set(outcomes) <= {"completed", "stream cut", "status 502", "status 503"}
            assert outcomes["completed"] >= CLIENTS * REQUESTS_PER_CLIENT // 2, outcomes
            assert elapsed < 30, f"took {elapsed:.1f}s"

            time.sleep(2.5)  # two failed health checks, one second apart: marked down
            after = routing(lb)
            assert victim_name not in after.values()
            moved = {m for m in MODELS if owners[m] != after[m]}
            assert moved == {m for m in MODELS if owners[m] == victim_name}  # only its models

    assert check_store(store) == []
