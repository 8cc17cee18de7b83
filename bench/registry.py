"""Debian's `docker-registry` (the CNCF distribution server) on a free loopback port.

One launcher for the pull benchmark and the registry tests: both need the real server,
started from a throw-away config and stopped without leaving a process behind. The tests
add basic auth (`auth_config`), blob deletion and relative redirect URLs.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

BINARY = "docker-registry"
STARTUP_S = 20.0


class RegistryMissingError(FileNotFoundError):
    """`docker-registry` is not installed (`apt-get install docker-registry`)."""


@dataclass(frozen=True)
class Registry:
    host: str
    """`127.0.0.1:<port>`, the host part of model names pushed here."""
    storage: Path
    """The filesystem driver's root folder."""

    def blob_path(self, digest: str) -> Path:
        """Where the filesystem driver keeps a blob's bytes."""
        hex_ = digest.removeprefix("sha256:")
        return self.storage / "docker/registry/v2/blobs/sha256" / hex_[:2] / hex_ / "data"


def binary() -> Path:
    found = shutil.which(BINARY) or f"/usr/bin/{BINARY}"
    if not Path(found).is_file():
        raise RegistryMissingError(f"{BINARY} is missing: apt-get install docker-registry")
    return Path(found)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_up(
    url: str, deadline_s: float = STARTUP_S, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll `url` until it answers; give up at the deadline or when `process` exits."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            exited = process is not None and process.poll() is not None
            if exited or time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not come up") from None
            time.sleep(0.05)


def config_text(
    storage: Path, port: int, *, auth_config: str = "", delete: bool, relative_urls: bool
) -> str:
    """The registry's YAML config: quiet logs, filesystem storage, loopback only."""
    return (
        "version: 0.1\n"
        "log:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n"
        + ("  delete:\n    enabled: true\n" if delete else "")
        + f"http:\n  addr: 127.0.0.1:{port}\n  secret: {secrets.token_hex(16)}\n"
        f"  relativeurls: {'true' if relative_urls else 'false'}\n" + auth_config
    )


@contextlib.contextmanager
def serve_registry(
    root: Path, *, auth_config: str = "", delete: bool = False, relative_urls: bool = False
) -> Iterator[Registry]:
    """Serve a registry with its storage, config and log under `root` until the block ends."""
    command = binary()
    port = free_port()
    storage = root / "storage"
    storage.mkdir(parents=True)
    config = root / "config.yml"
    config.write_text(
        config_text(
            storage, port, auth_config=auth_config, delete=delete, relative_urls=relative_urls
        )
    )
    with (root / "registry.log").open("wb") as log:
        process = subprocess.Popen(
            [str(command), "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        try:
            wait_until_up(f"http://127.0.0.1:{port}/v2/", process=process)
            yield Registry(f"127.0.0.1:{port}", storage)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
