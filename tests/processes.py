"""Servers in their own processes (replicas that can be killed), on free loopback ports."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.registry import free_port, wait_until_up

REPO = Path(__file__).resolve().parents[1]
SERVE = ("-m", "ollamapy", "serve")


@dataclass
class ServerProcess:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path


def _start(workdir: Path, models: Path, command: Sequence[str]) -> ServerProcess:
    """`python <command>` with OLLAMA_HOST on a free port and OLLAMA_MODELS=`models`; its
    output goes to a log file in `workdir`."""
    port = free_port()
    environment = dict(os.environ)
    environment.update(OLLAMA_HOST=f"127.0.0.1:{port}", OLLAMA_MODELS=str(models))
    paths = [str(REPO / "src"), str(REPO), environment.get("PYTHONPATH", "")]
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"server-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, *command],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
    return ServerProcess(f"http://127.0.0.1:{port}", port, process, log_path)


@contextmanager
def server_processes(
    count: int, workdir: Path, models: Path, command: Sequence[str] = SERVE
) -> Iterator[list[ServerProcess]]:
    """`count` replicas sharing the store `models`, started together, killed at the end."""
    servers: list[ServerProcess] = []
    try:
        for n in range(count):
            servers.append(_start(workdir / f"replica-{n}", models, command))
        for server in servers:
            wait_until_up(f"{server.url}/api/version", 60, server.process)
        yield servers
    finally:
        for server in servers:
            if server.process.poll() is None:
                server.process.kill()
            server.process.wait(timeout=30)
