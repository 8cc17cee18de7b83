"""`python -m bench.pull`: how fast ollamapy pulls a large blob from a loopback registry.

    python -m bench.pull [--size-mb 256] [--repeat 3] [--json out.json]

Pushes a random blob (cached in ~/.cache/ollamapy/bench/) as the one layer of a model to
a loopback `docker-registry` with a temporary storage folder, then times, in alternating
order, `repeat` rounds of: our pull (`pull_model` into a fresh store, digest verified),
`skopeo copy docker://… dir:…` of the same image, and a plain `shutil.copyfile` of the
registry's stored blob. All three read the blob from the page cache (it was just
written, and every round reads it again), so the figures compare transfer overhead, not
the disk. `run()` returns a dict that the bench suite can merge into its results.

Two ceilings are timed in the same rounds, because they bound what a pull can reach:
`sha256` (hashlib over the cached blob: a pull must hash every byte before the blob
enters the store, and one SHA-256 stream runs on one core) and `curl` (`curl -o
/dev/null` of the blob URL: what this registry serves to the leanest HTTP client). Our
pull also writes the blob to disk and fsyncs it, which neither ceiling (nor the file
copy) does. Each figure comes with the CPU seconds it used (this process and its
children, so the registry's own share is not in it) and the load average before and
after, since other work on a small machine moves every figure. Before each call the
bench touches and frees memory the size of the blob (`_back_memory`), so no method pays
the VM's cost of memory that went back to the host while another method ran.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/pull.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.registry import Registry, RegistryMissingError, serve_registry
from ollamapy.registry import RegistryOptions, pull_model, push_model
from ollamapy.store import CONFIG_MEDIA_TYPE, Layer, Manifest, Store
from ollamapy.types import Digest, ModelName

CACHE = Path.home() / ".cache" / "ollamapy" / "bench"
REPOSITORY = "library/big"
MB = 1_000_000
MiB = 1024 * 1024
LAYER_MEDIA_TYPE = "application/vnd.docker.image.rootfs.diff.tar.gzip"
"""skopeo refuses Ollama's layer types in a docker v2s2 manifest; a pull does not care."""
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
    _run_tool(
        "skopeo copy",
        [
            binary,
            "--insecure-policy",
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            f"docker://{name.host}/{REPOSITORY}:{name.tag}",
            f"dir:{target}",
        ],
    )
    if not (target / str(digest).removeprefix("sha256:")).is_file():
        raise RuntimeError("skopeo did not write the blob")


def file_copy(stored: Path) -> Callable[[ModelName, Path, Digest], None]:
    def copy(_name: ModelName, scratch: Path, _digest: Digest) -> None:
        shutil.copyfile(stored, scratch / "copy.bin")

    return copy


def sha256_alone(stored: Path) -> Callable[[ModelName, Path, Digest], None]:
    """The hash ceiling: hashlib over the cached blob, as `verify_and_commit` would."""

    def digest_of(_name: ModelName, _scratch: Path, digest: Digest) -> None:
        with stored.open("rb") as handle:
            actual = hashlib.file_digest(handle, "sha256").hexdigest()
        if f"sha256:{actual}" != str(digest):
            raise RuntimeError("the registry's blob does not hash to its digest")

    return digest_of


def curl_binary() -> str | None:
    return shutil.which("curl")


def curl(name: ModelName, _scratch: Path, digest: Digest) -> None:
    """The server ceiling: the blob's URL fetched by curl into /dev/null."""
    binary = curl_binary()
    if binary is None:
        raise RuntimeError("curl is missing")
    url = f"http://{name.host}/v2/{REPOSITORY}/blobs/{digest}"
    _run_tool("curl", [binary, "--silent", "--show-error", "--fail", "--output", "/dev/null", url])


def _run_tool(what: str, command: list[str]) -> None:
    """Run one timed method's command; its error output becomes the exception."""
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed: {result.stderr.strip()[-2000:]}")


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (user + system)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _back_memory(scratch: Path, size: int) -> None:
    """Write, then delete, a file of `size` bytes, so that the next writes into the page
    cache land in memory the host already backs.

    In the reference VM, memory left free for about two seconds goes back to the host,
    and writing 256 MiB into such memory costs about 0.35 s of CPU more than into memory
    freed a moment ago (0.4 s against 0.05 s). Without this, whichever method follows a
    pause (skopeo's start-up, the hash, curl) pays it, and the figures swing by up to 8x.
    Touching anonymous memory instead does not help: it is not reused the same way.
    """
    chunk = bytes(MiB)
    path = scratch / "back-memory.bin"
    with path.open("wb") as out:
        for _ in range(-(-size // MiB)):
            out.write(chunk)
    path.unlink()


def _timed(
    method: Callable[[ModelName, Path, Digest], None], name: ModelName, digest: Digest, size: int
) -> tuple[float, float]:
    """Wall and CPU seconds of one call (the scratch folder's clean-up is not counted)."""
    with tempfile.TemporaryDirectory(prefix="bench-pull-") as scratch:
        _back_memory(Path(scratch), size)
        cpu = _cpu_seconds()
        started = time.perf_counter()
        method(name, Path(scratch), digest)
        elapsed = time.perf_counter() - started
        cpu = _cpu_seconds() - cpu
    return elapsed, cpu


# -------------------------------------------------------------------- run


@contextlib.contextmanager
def _registry(root: Path) -> Iterator[Registry]:
    try:
        with serve_registry(root) as server:
            yield server
    except RegistryMissingError as missing:
        raise SystemExit(str(missing)) from None


def run(size_mib: int = 256, repeat: int = 3) -> dict[str, Any]:
    """Measure; the result is `{"pull": {...}}`, MB/s medians, ratios and ceilings included."""
    blob, digest = source_blob(size_mib)
    size = blob.stat().st_size
    load_before = os.getloadavg()
    with (
        tempfile.TemporaryDirectory(prefix="bench-registry-") as root,
        _registry(Path(root)) as server,
    ):
        name = push_big(server.host, blob, digest, Path(root))
        stored = server.blob_path(str(digest))
        methods: dict[str, Callable[[ModelName, Path, Digest], None]] = {
            "ours": ours,
            "skopeo": skopeo,
            "file_copy": file_copy(stored),
            "sha256": sha256_alone(stored),
        }
        if curl_binary() is not None:
            methods["curl"] = curl
        seconds, cpu, errors = _rounds(methods, name, digest, repeat, size)
    mb_s = {key: [size / MB / s for s in values] for key, values in seconds.items() if values}
    medians = {key: statistics.median(values) for key, values in mb_s.items()}

    def ratio(a: str, b: str) -> float | None:
        return medians[a] / medians[b] if a in medians and b in medians else None

    file_copy_target = 0.8 * medians["file_copy"] if "file_copy" in medians else None
    return {
        "pull": {
            "blob_bytes": size,
            "repeat": repeat,
            "page_cache": "warm: the registry's blob file is cached for every method",
            "cpus": os.cpu_count(),
            "load_average": {"before": list(load_before), "after": list(os.getloadavg())},
            "mb_s": {key: {"median": medians[key], "samples": mb_s[key]} for key in mb_s},
            "cpu_s": {key: statistics.median(values) for key, values in cpu.items() if values},
            "ours_over_skopeo": ratio("ours", "skopeo"),
            "ours_over_file_copy": ratio("ours", "file_copy"),
            "ours_over_sha256": ratio("ours", "sha256"),
            "ours_over_curl": ratio("ours", "curl"),
            "targets": {"ours_over_skopeo": 1.0, "ours_over_file_copy": 0.8},
            "ceilings": {
                "sha256_mb_s": medians.get("sha256"),
                "curl_mb_s": medians.get("curl"),
                "file_copy_target_mb_s": file_copy_target,
                "file_copy_target_over_sha256": (
                    file_copy_target / medians["sha256"]
                    if file_copy_target is not None and "sha256" in medians
                    else None
                ),
            },
            "errors": errors,
        }
    }


def _rounds(
    methods: dict[str, Callable[[ModelName, Path, Digest], None]],
    name: ModelName,
    digest: Digest,
    repeat: int,
    size: int,
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, str]]:
    """`repeat` rounds of every method, in alternating order; wall and CPU seconds."""
    order = list(methods)
    seconds: dict[str, list[float]] = {key: [] for key in methods}
    cpu: dict[str, list[float]] = {key: [] for key in methods}
    errors: dict[str, str] = {}
    _timed(methods["file_copy"], name, digest, size)  # warm the page cache once
    for round_ in range(repeat):
        for key in order if round_ % 2 == 0 else order[::-1]:
            if key in errors:
                continue
            try:
                wall, used = _timed(methods[key], name, digest, size)
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
                errors[key] = str(exc)
                continue
            seconds[key].append(wall)
            cpu[key].append(used)
    return seconds, cpu, errors


def markdown(result: dict[str, Any]) -> str:
    data = result["pull"]
    load = data.get("load_average", {})
    lines = [
        f"Pull of a {data['blob_bytes'] / MB:.0f} MB blob from a loopback docker-registry "
        f"({data['repeat']} rounds, {data['page_cache']}; {data['cpus']} CPUs, load average "
        f"{_loads(load.get('before'))} before, {_loads(load.get('after'))} after)",
        "",
        "| method | median MB/s | samples | median CPU s |",
        "|---|---:|---|---:|",
    ]
    cpu = data.get("cpu_s", {})
    for key, value in data["mb_s"].items():
        samples = ", ".join(f"{s:.0f}" for s in value["samples"])
        used = f"{cpu[key]:.2f}" if key in cpu else "n/a"
        lines.append(f"| {key} | {value['median']:.0f} | {samples} | {used} |")
    for key in ("ours_over_skopeo", "ours_over_file_copy"):
        value = data[key]
        target = data["targets"][key]
        shown = "n/a" if value is None else f"{value:.2f}"
        lines.append(f"\n{key}: {shown} (target ≥ {target})")
    lines.extend(_ceiling_lines(data))
    for key, error in data["errors"].items():
        lines.append(f"\n{key} failed: {error}")
    return "\n".join(lines)


def _ceiling_lines(data: dict[str, Any]) -> list[str]:
    """What bounds the pull: the hash (mandatory) and the server (what curl gets)."""
    ceilings = data.get("ceilings", {})
    lines = []
    for key, label in (("ours_over_sha256", "sha256 alone"), ("ours_over_curl", "curl")):
        value = data.get(key)
        if value is not None:
            lines.append(f"\n{key}: {value:.2f} (ceiling: {label})")
    target = ceilings.get("file_copy_target_mb_s")
    over = ceilings.get("file_copy_target_over_sha256")
    if target is not None and over is not None:
        verdict = "above" if over > 1 else "within"
        lines.append(
            f"\n0.8 × file copy = {target:.0f} MB/s, {over:.2f} × sha256 alone "
            f"({ceilings['sha256_mb_s']:.0f} MB/s): {verdict} the hash ceiling. Every pulled byte "
            "is hashed before the blob enters the store, and one SHA-256 stream cannot be split "
            "across cores."
        )
    return lines


def _loads(values: list[float] | None) -> str:
    return "n/a" if not values else "/".join(f"{v:.2f}" for v in values)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args.size_mb, args.repeat)
    print(markdown(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    return 1 if result["pull"]["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
