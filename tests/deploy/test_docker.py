"""`deploy/Dockerfile`, built and run as Ollama's Docker docs use Ollama's image.

No image registry is reachable, so the base image is made here: Debian's `debootstrap`
writes a bookworm root filesystem (cached under ~/.cache/ollamapy-docker, so only the first
run downloads it) and `docker import` turns it into an image (`scripts/docker_base.sh`).
The build context holds wheels and the bundled SmolLM2 file (`scripts/docker_context.sh`);
inside the build only Debian's packages are fetched. A private Docker daemon (Debian's
`docker.io`, started here, without iptables: the build uses the host network, the
container the default bridge with its port published on loopback) builds and runs it.

Slow: measured on the 2-core reference machine (shared, load average 16-24), 3.1-4.2
minutes with the debootstrap tarball cached (1.8-3.2 of them building the image), plus
about 3.5 minutes for debootstrap itself on the first run.
Needs root, `docker.io` and `debootstrap` (scripts/test.sh installs them).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import ollama
import pytest

from tests.processes import REPO
from tests.registry.servers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

MODEL = "smollm2:135m"
IMAGE = "ollamapy-test:latest"
BASE = "ollamapy-base:bookworm"
CACHE = Path.home() / ".cache" / "ollamapy-docker"


def _docker_client() -> str:
    """The client from Debian's docker.io, which speaks the daemon's API version and
    builds with the classic builder (a newer client elsewhere on PATH may not)."""
    for candidate in ("/usr/bin/docker", shutil.which("docker")):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.fail("docker is missing: install it with `apt-get install docker.io`")


@pytest.fixture(scope="module")
def docker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A private dockerd; yields the environment that points `docker` at it."""
    dockerd = shutil.which("dockerd")
    if dockerd is None or os.geteuid() != 0:
        pytest.fail("needs root and dockerd: run as root after `apt-get install docker.io`")
    if shutil.which("debootstrap") is None:
        pytest.fail("debootstrap is missing: install it with `apt-get install debootstrap`")
    run = tmp_path_factory.mktemp("dockerd")
    had_bridge = Path("/sys/class/net/docker0").exists()
    exec_root = Path(f"/tmp/ollamapy-dockerd-{os.getpid()}")  # short: unix socket paths
    socket = exec_root / "docker.sock"
    (CACHE / "data-root").mkdir(parents=True, exist_ok=True)
    with (run / "dockerd.log").open("wb") as log:
        daemon = subprocess.Popen(
            [
                dockerd,
                f"--host=unix://{socket}",
                f"--data-root={CACHE / 'data-root'}",  # keeps the build cache between runs
                f"--exec-root={exec_root}",
                f"--pidfile={exec_root / 'docker.pid'}",
                "--iptables=false",  # no NAT rules: published ports go through docker-proxy
                "--containerd-namespace=ollamapy-test",
                "--containerd-plugins-namespace=ollamapy-test-plugins",
            ],
            stdout=log,
            stderr=log,
        )
    env = {
        **os.environ,
        "DOCKER_HOST": f"unix://{socket}",
        "DOCKER_BUILDKIT": "0",
        "PATH": f"{Path(_docker_client()).parent}:{os.environ['PATH']}",
    }
    try:
        deadline = time.monotonic() + 60
        while _docker(env, "info", check=False).returncode != 0:
            assert daemon.poll() is None, (run / "dockerd.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "dockerd did not start"
            time.sleep(0.5)
        yield env
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(30)
        netns = exec_root / "netns" / "default"  # a mount dockerd leaves behind
        if os.path.ismount(netns):
            subprocess.run(["umount", str(netns)], capture_output=True, check=False)
        shutil.rmtree(exec_root, ignore_errors=True)
        if not had_bridge and shutil.which("ip"):  # dockerd leaves the bridge it made
            subprocess.run(["ip", "link", "delete", "docker0"], capture_output=True, check=False)


def _docker(
    env: dict[str, str], *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [_docker_client(), *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    if check:
        assert result.returncode == 0, f"docker {' '.join(args)}:\n{result.stderr[-3000:]}"
    return result


def _script(env: dict[str, str], *args: str, timeout: float) -> None:
    script_env = {**env, "PYTHON": sys.executable, "OLLAMAPY_DOCKER_CACHE": str(CACHE)}
    result = subprocess.run(
        ["bash", *args], env=script_env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"{args[0]}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"


@pytest.fixture(scope="module")
def image(docker: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    _script(docker, str(REPO / "scripts" / "docker_base.sh"), BASE, timeout=1200)
    context = tmp_path_factory.mktemp("context") / "ctx"
    context_script = str(REPO / "scripts" / "docker_context.sh")
    _script(docker, context_script, str(context), "smollm2", timeout=600)
    _docker(
        docker,
        "build",
        "--network=host",
        f"--build-arg=BASE_IMAGE={BASE}",
        f"--tag={IMAGE}",
        str(context),
        timeout=1500,
    )
    yield IMAGE
    _docker(docker, "image", "rm", "--force", IMAGE, check=False)  # the base image stays
    _docker(docker, "image", "prune", "--force", check=False)


def _start(env: dict[str, str], name: str, volume: str, port: int) -> str:
    """`docker run -d -v <volume>:/root/.ollama -p <port>:11434 --name <name> <image>` as
    Ollama's docs give it (published on loopback only, on a free port); waits for the
    image's HEALTHCHECK."""
    _docker(
        env,
        "run",
        "-d",
        f"--volume={volume}:/root/.ollama",
        f"--publish=127.0.0.1:{port}:11434",
        f"--name={name}",
        IMAGE,
    )
    deadline = time.monotonic() + 120
    while True:
        state = json.loads(_docker(env, "inspect", "--format={{json .State}}", name).stdout)
        if state.get("Health", {}).get("Status") == "healthy":
            return name
        assert state["Running"], _docker(env, "logs", name, check=False).stderr[-3000:]
        assert time.monotonic() < deadline, f"not healthy: {state.get('Health')}"
        time.sleep(1)


def test_the_image_serves_the_bundled_model_and_keeps_its_store(
    docker: dict[str, str], image: str
) -> None:
    volume, name, port = f"ollamapy-test-{os.getpid()}", f"ollamapy-test-{os.getpid()}", free_port()
    try:
        _start(docker, name, volume, port)
        client = ollama.Client(host=f"http://127.0.0.1:{port}")
        assert MODEL in [m.model for m in client.list().models]
        reply = client.generate(
            model=MODEL, prompt="Say hello.", options={"num_predict": 8, "temperature": 0}
        )
        assert reply.done and (reply.response or "").strip()
        listed = _docker(docker, "exec", name, "ollama", "list").stdout  # as the docs do
        assert MODEL in listed

        client.create(model="mine", from_=MODEL, system="You are terse.")
        _docker(docker, "rm", "--force", name)
        _start(docker, name, volume, port)  # a new container on the same volume

        assert {MODEL, "mine:latest"} <= {m.model for m in client.list().models}
        assert 'SYSTEM """You are terse."""' in (client.show("mine").modelfile or "")
        again = client.chat(
            model="mine",
            messages=[{"role": "user", "content": "hi"}],
            options={"num_predict": 4, "temperature": 0},
        )
        assert again.done and again.message.content
    finally:
        _docker(docker, "rm", "--force", name, check=False)
        _docker(docker, "volume", "rm", "--force", volume, check=False)
