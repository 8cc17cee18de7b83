"""Starting, probing and stopping the servers under test, and sampling their peak memory."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.reference import Reference

OURS = [sys.executable, "-m", "ollamapy", "serve"]


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _read_ppid(pid: int) -> int | None:
    """Parent pid from /proc/<pid>/stat (the field after the parenthesised name)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def descendants(root: int) -> list[int]:
    """Every live descendant of `root`, found by walking /proc."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            ppid = _read_ppid(int(entry))
            if ppid is not None:
                parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        kids = parents.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def vm_hwm_mib(pid: int) -> float | None:
    """Peak resident set size (VmHWM) of a live process in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cmdline(pid: int) -> str:
    """The command line of a live process, spaces between arguments."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


@dataclass
class RssSampler:
    """Polls VmHWM of a process tree in the background; keeps each pid's highest value."""

    root: int
    interval: float = 0.2
    peaks: dict[int, float] = field(default_factory=dict)
    labels: dict[int, str] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> None:
        """Take one sample of the root and all its descendants."""
        for pid in [self.root, *descendants(self.root)]:
            hwm = vm_hwm_mib(pid)
            if hwm is not None:
                self.peaks[pid] = max(hwm, self.peaks.get(pid, 0.0))
                self.labels.setdefault(pid, cmdline(pid))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def start(self) -> RssSampler:
        self.sample()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Take a last sample and stop polling."""
        self.sample()
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def root_peak(self) -> float | None:
        return self.peaks.get(self.root)

    def child_peaks(self) -> list[float]:
        return [v for pid, v in sorted(self.peaks.items()) if pid != self.root]


@dataclass
class Server:
    """A server process we started; `stop()` ends it and any children it left behind."""

    name: str
    proc: subprocess.Popen[bytes]
    base_url: str
    log: Path
    sampler: RssSampler
    startup_s: float = 0.0

    def stop(self) -> None:
        """SIGTERM, wait, SIGKILL if needed; then end leftover children by pid."""
        kids = descendants(self.proc.pid)
        self.sampler.stop()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        for pid in kids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float) -> None:
    """Poll `url` until it answers 200; raise with the log tail if the process dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: server exited early:\n{log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url}: not ready after {timeout}s:\n{log.read_text()[-2000:]}")


def _launch(
    name: str,
    cmd: list[str],
    env: dict[str, str],
    port: int,
    probe: str,
    logdir: Path,
    timeout: float,
) -> Server:
    """Start a process, wait until its probe URL answers, and begin sampling its memory."""
    log = logdir / f"{name}.log"
    base = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    sampler = RssSampler(proc.pid).start()
    server = Server(name, proc, base, log, sampler)
    try:
        _wait_ready(proc, base + probe, log, timeout)
    except BaseException:
        server.stop()
        raise
    server.startup_s = time.monotonic() - t0
    return server


def start_ours(models_dir: Path, num_parallel: int, logdir: Path) -> Server:
    """`ollama serve` on a free loopback port with its own model store."""
    port = free_port()
    env = {
        **os.environ,
        "OLLAMA_HOST": f"127.0.0.1:{port}",
        "OLLAMA_MODELS": str(models_dir),
        "OLLAMA_NUM_PARALLEL": str(num_parallel),
        "OLLAMA_KEEP_ALIVE": "30m",
    }
    return _launch("ours", OURS, env, port, "/api/version", logdir, timeout=60)


def start_llama_server(
    ref: Reference, model: Path, threads: int, parallel: int, num_ctx: int, logdir: Path
) -> Server:
    """llama-server with `parallel` slots of `num_ctx` each, sized as Ollama sizes them."""
    port = free_port()
    cmd = [
        str(ref.llama_server),
        "-m",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "-t",
        str(threads),
        "-tb",
        str(threads),
        "-np",
        str(parallel),
        "-c",
        str(num_ctx * parallel),
        "--no-webui",
    ]
    return _launch("llama-server", cmd, dict(os.environ), port, "/health", logdir, timeout=120)
