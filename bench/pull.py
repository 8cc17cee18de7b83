"""`python -m bench.pull`: how fast ollamapy pulls a large blob from a loopback registry.

    python -m bench.pull [--size-mb 256] [--repeat 3] [--json out.json]

Pushes a random blob (cached in ~/.cache/ollamapy/bench/) as the one layer of a model to
a loopback `docker-registry` with a temporary storage folder, then times, in alternating
order, `repeat` rounds of: our pull (`pull_model` into a fresh store, digest verified),
`skopeo copy docker://… dir:…` of the same image, and a plain `shutil.copyfile` of the
registry's stored blob. All three read the blob from the page cache (it was just
written, and every round reads it again), so the figures compare transfer overhead, not
the disk. `run()` returns a dict that the bench suite can merge into its results.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

if __package__ in (None, ""):  # `python bench/pull.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ollamapy.registry import RegistryOptions, pull_model, push_model
from ollamapy.store import CONFIG_MEDIA_TYPE, Layer, Manifest, Store
from ollamapy.types import Digest, ModelName

CACHE = Path.home() / ".cache" / "ollamapy" / "bench"
REGISTRY_BINARY = "docker-registry"
REPOSITORY = "library/big"
MB = 1_000_000
MiB = 1024 * 1024
LAYER_MEDIA_TYPE = "application/vnd.docker.image.rootfs.diff.tar.gzip"
"""skopeo refuses Ollama's layer types in a docker v2s2 manifest; a pull does not care."""
STARTUP_S = 20.0
COMMAND_TIMEOUT_S = 600.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.pull", description=__doc__.split("\n")[0])
    ap.add_argument("--size-mb", type=int, default=256, help="blob size in MiB (default 256)")
    ap.add_argument("--repeat", type=int, default=3, help="rounds of each method (default 3)")
    ap.add_argument("--json", type=Path, default=None, help="also write the result here")
    ns = ap.parse_args(argv)
    ns.size_mb = max(1, ns.size_mb)
    ns.repeat = max(1, ns.repeat)
    return ns


# ------------------------------------------------------------------ blob


def source_blob(size_mib: int) -> tuple[Path, Digest]:
    """A cached random blob of `size_mib` MiB and its digest (made once, then reused)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"pull-{size_mib}MiB.bin"
    digest_file = path.with_suffix(".sha256")
    if path.is_file() and path.stat().st_size == size_mib * MiB and digest_file.is_file():
        return path, Digest.parse(digest_file.read_text().strip())
    hasher = hashlib.sha256()
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as out:
        for _ in range(size_mib):
            chunk = os.urandom(MiB)
            hasher.update(chunk)
            out.write(chunk)
    os.replace(tmp, path)
    digest = Digest.parse(f"sha256:{hasher.hexdigest()}")
    digest_file.write_text(str(digest))
    return path, digest


def _place(source: Path, target: Path) -> None:
    """Put `source`'s bytes at `target`: a hard link when possible, else a copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


# -------------------------------------------------------------- registry


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def registry(root: Path) -> Iterator[tuple[str, Path]]:
    """`docker-registry` on a free loopback port; yields its host and storage folder."""
    binary = shutil.which(REGISTRY_BINARY) or f"/usr/bin/{REGISTRY_BINARY}"
    if not Path(binary).is_file():
        raise SystemExit("docker-registry is missing: apt-get install docker-registry")
    port = _free_port()
    storage = root / "storage"
    storage.mkdir(parents=True)
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: {secrets.token_hex(16)}\n"
    )
    with (root / "registry.log").open("wb") as log:
        process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + STARTUP_S
            while True:
                try:
                    httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1.0)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise RuntimeError("docker-registry did not start") from None
                    time.sleep(0.05)
            yield f"127.0.0.1:{port}", storage
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def registry_blob(storage: Path, digest: Digest) -> Path:
    """Where the registry's filesystem driver keeps a blob's bytes."""
    hex_ = str(digest).removeprefix("sha256:")
    return storage / "docker/registry/v2/blobs/sha256" / hex_[:2] / hex_ / "data"


def push_big(host: str, blob: Path, digest: Digest, work: Path) -> ModelName:
    """Push `blob` as the model layer of `host/library/big:latest` (docker v2 schema 2)."""
    store = Store(work / "push-store")
    store.blobs_dir.mkdir(parents=True, exist_ok=True)
    _place(blob, store.blob_path(digest))
    config_digest, config_size = store.write_blob(
        [b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}']
    )
    manifest = Manifest(
        Layer(CONFIG_MEDIA_TYPE, config_digest, config_size),
        (Layer(LAYER_MEDIA_TYPE, digest, blob.stat().st_size),),
    )
    name = ModelName.parse(f"{host}/{REPOSITORY}:latest")
    store.write_manifest(name, manifest)

    async def push() -> None:
        async for _event in push_model(store, str(name), RegistryOptions(insecure=True)):
            pass

    asyncio.run(push())
    shutil.rmtree(store.root, ignore_errors=True)
    return name


# ---------------------------------------------------------------- methods


def ours(name: ModelName, scratch: Path, digest: Digest) -> None:
    store = Store(scratch / "store")

    async def pull() -> None:
        async for _event in pull_model(store, str(name), RegistryOptions(insecure=True)):
            pass

    asyncio.run(pull())
    if not store.has_blob(digest):
        raise RuntimeError("our pull did not produce the blob")


def skopeo(name: ModelName, scratch: Path, digest: Digest) -> None:
    binary = shutil.which("skopeo")
    if binary is None:
        raise RuntimeError("skopeo is missing: apt-get install -y skopeo")
    target = scratch / "skopeo"
    result = subprocess.run(
        [
            binary,
            "--insecure-policy",
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            f"docker://{name.host}/{REPOSITORY}:{name.tag}",
            f"dir:{target}",
        ],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"skopeo copy failed: {result.stderr.strip()[-2000:]}")
    if not (target / str(digest).removeprefix("sha256:")).is_file():
        raise RuntimeError("skopeo did not write the blob")


def file_copy(stored: Path) -> Callable[[ModelName, Path, Digest], None]:
    def copy(_name: ModelName, scratch: Path, _digest: Digest) -> None:
        shutil.copyfile(stored, scratch / "copy.bin")

    return copy


def _timed(
    method: Callable[[ModelName, Path, Digest], None], name: ModelName, digest: Digest
) -> float:
    with tempfile.TemporaryDirectory(prefix="bench-pull-") as scratch:
        started = time.perf_counter()
        method(name, Path(scratch), digest)
        elapsed = time.perf_counter() - started
    return elapsed


# -------------------------------------------------------------------- run


def run(size_mib: int = 256, repeat: int = 3) -> dict[str, Any]:
    """Measure; the result is `{"pull": {...}}`, MB/s medians and ratios included."""
    blob, digest = source_blob(size_mib)
    size = blob.stat().st_size
    with (
        tempfile.TemporaryDirectory(prefix="bench-registry-") as root,
        registry(Path(root)) as (host, storage),
    ):
        name = push_big(host, blob, digest, Path(root))
        stored = registry_blob(storage, digest)
        methods: dict[str, Callable[[ModelName, Path, Digest], None]] = {
            "ours": ours,
            "skopeo": skopeo,
            "file_copy": file_copy(stored),
        }
        order = list(methods)
        seconds: dict[str, list[float]] = {key: [] for key in methods}
        errors: dict[str, str] = {}
        _timed(methods["file_copy"], name, digest)  # warm the page cache once
        for round_ in range(repeat):
            for key in order if round_ % 2 == 0 else order[::-1]:
                if key in errors:
                    continue
                try:
                    seconds[key].append(_timed(methods[key], name, digest))
                except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
                    errors[key] = str(exc)
    mb_s = {key: [size / MB / s for s in values] for key, values in seconds.items() if values}
    medians = {key: statistics.median(values) for key, values in mb_s.items()}

    def ratio(a: str, b: str) -> float | None:
        return medians[a] / medians[b] if a in medians and b in medians else None

    return {
        "pull": {
            "blob_bytes": size,
            "repeat": repeat,
            "page_cache": "warm: the registry's blob file is cached for every method",
            "cpus": os.cpu_count(),
            "mb_s": {key: {"median": medians[key], "samples": mb_s[key]} for key in mb_s},
            "ours_over_skopeo": ratio("ours", "skopeo"),
            "ours_over_file_copy": ratio("ours", "file_copy"),
            "targets": {"ours_over_skopeo": 1.0, "ours_over_file_copy": 0.8},
            "errors": errors,
        }
    }


def markdown(result: dict[str, Any]) -> str:
    data = result["pull"]
    lines = [
        f"Pull of a {data['blob_bytes'] / MB:.0f} MB blob from a loopback docker-registry "
        f"({data['repeat']} rounds, {data['page_cache']})",
        "",
        "| method | median MB/s | samples |",
        "|---|---:|---|",
    ]
    for key, value in data["mb_s"].items():
        samples = ", ".join(f"{s:.0f}" for s in value["samples"])
        lines.append(f"| {key} | {value['median']:.0f} | {samples} |")
    for key in ("ours_over_skopeo", "ours_over_file_copy"):
        value = data[key]
        target = data["targets"][key]
        shown = "n/a" if value is None else f"{value:.2f}"
        lines.append(f"\n{key}: {shown} (target ≥ {target})")
    for key, error in data["errors"].items():
        lines.append(f"\n{key} failed: {error}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args.size_mb, args.repeat)
    print(markdown(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    return 1 if result["pull"]["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
