"""The reference: llama-bench and llama-server built from the llama.cpp that we link.

The source is the `vendor/llama.cpp` tree of the llama-cpp-python sdist whose version is
installed, so the reference runs exactly the kernels our runner runs. The build lives outside
the repository, in `~/.cache/ollamapy/bench/llama.cpp-<version>/`, and is reused when present.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.stats import summarize

TARGETS = ("llama-bench", "llama-server")
CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DLLAMA_CURL=OFF",
    "-DGGML_NATIVE=ON",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DBUILD_SHARED_LIBS=OFF",
)


@dataclass(frozen=True)
class Reference:
    """Paths of the built reference binaries and the llama.cpp version they come from."""

    llama_bench: Path
    llama_server: Path
    version: str


def binding_version() -> str:
    """The installed llama-cpp-python version (the sdist we build from)."""
    return metadata.version("llama-cpp-python")


def cache_dir(version: str | None = None) -> Path:
    """Where the reference build for this llama-cpp-python version lives."""
    return (
        Path.home() / ".cache" / "ollamapy" / "bench" / f"llama.cpp-{version or binding_version()}"
    )


def commit_from_changelog(text: str, version: str) -> str | None:
    """The `ggml-org/llama.cpp@<sha>` named under `## [version]` in llama-cpp-python's CHANGELOG."""
    section = re.search(rf"^## \[{re.escape(version)}\](.*?)(?=^## \[|\Z)", text, re.M | re.S)
    if section is None:
        return None
    sha = re.search(r"llama\.cpp@([0-9a-f]{7,40})", section.group(1))
    return sha.group(1) if sha else None


def version_string(root: Path, version: str) -> str:
    """`llama.cpp@<sha> (llama-cpp-python <version>)`, from VERSION.json or the sdist."""
    info = root / "VERSION.json"
    if info.exists():
        return str(json.loads(info.read_text())["llama_cpp"])
    sha = None
    tarball = root / f"llama_cpp_python-{version}.tar.gz"
    if tarball.exists():
        with tarfile.open(tarball) as tar:
            member = tar.extractfile(f"llama_cpp_python-{version}/CHANGELOG.md")
            if member is not None:
                sha = commit_from_changelog(member.read().decode(), version)
    text = f"llama.cpp@{sha or 'unknown'} (llama-cpp-python {version})"
    info.write_text(json.dumps({"llama_cpp": text}) + "\n")
    return text


def find(version: str | None = None) -> Reference | None:
    """The cached reference build, or None when it has not been built."""
    version = version or binding_version()
    root = cache_dir(version)
    paths = [root / "build" / "bin" / t for t in TARGETS]
    if not all(p.is_file() for p in paths):
        return None
    return Reference(paths[0], paths[1], version_string(root, version))


def _run(cmd: list[str], cwd: Path, log: Path) -> None:
    """Run a build step, its output appended to `log`; raise with the log tail on failure."""
    print(f"[bench] {' '.join(cmd)}  (log: {log})", file=sys.stderr)
    with log.open("ab") as out:
        proc = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}):\n{tail}")


def _fetch_source(root: Path, version: str) -> Path:
    """Download (pip's cache helps) and unpack the sdist's vendored llama.cpp tree."""
    tarball = root / f"llama_cpp_python-{version}.tar.gz"
    if not tarball.exists():
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                f"llama-cpp-python=={version}",
                "-d",
                str(root),
            ],
            root,
            root / "download.log",
        )
    src = root / "src"
    if not (src / "CMakeLists.txt").exists():
        prefix = f"llama_cpp_python-{version}/vendor/llama.cpp/"
        with tarfile.open(tarball) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
            for m in members:
                m.name = m.name[len(prefix) :]
            tar.extractall(src, members=[m for m in members if m.name], filter="data")
        (src / ".git").unlink(missing_ok=True)  # a dangling submodule pointer
    return src


def build(version: str | None = None, jobs: int = 2) -> Reference:
    """Build llama-bench and llama-server into the cache (about 8 minutes on 2 cores)."""
    version = version or binding_version()
    found = find(version)
    if found is not None:
        return found
    if shutil.which("cmake") is None:
        raise RuntimeError("cmake is needed to build the llama.cpp reference")
    root = cache_dir(version)
    root.mkdir(parents=True, exist_ok=True)
    src = _fetch_source(root, version)
    _run(
        ["cmake", "-S", str(src), "-B", str(root / "build"), *CMAKE_FLAGS], root, root / "cmake.log"
    )
    _run(
        ["cmake", "--build", str(root / "build"), "--target", *TARGETS, f"-j{jobs}"],
        root,
        root / "build.log",
    )
    built = find(version)
    if built is None:
        raise RuntimeError(f"the build finished but {TARGETS} are missing under {root}")
    return built


def parse_llama_bench(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """pp and tg t/s summaries from `llama-bench -o json` output.

    pp is taken at depth 0 (our prompts start from an empty context); tg at the deepest
    depth measured, which `run_llama_bench` sets to the prompt length, because our decode
    runs after a prompt of that length and attention cost grows with depth.
    """
    out: dict[str, Any] = {"pp_tps": None, "tg_tps": None}
    deepest = max((entry.get("n_depth", 0) for entry in entries), default=0)
    for entry in entries:
        samples = entry.get("samples_ts") or [entry.get("avg_ts")]
        depth = entry.get("n_depth", 0)
        if entry.get("n_gen", 0) == 0 and entry.get("n_prompt", 0) > 0 and depth == 0:
            out["pp_tps"] = summarize(samples)
            out["n_prompt"] = entry["n_prompt"]
        elif entry.get("n_gen", 0) > 0 and entry.get("n_prompt", 0) == 0 and depth == deepest:
            out["tg_tps"] = summarize(samples)
            out["n_gen"] = entry["n_gen"]
            out["tg_depth"] = depth
        for key in (
            "build_commit",
            "build_number",
            "cpu_info",
            "n_threads",
            "flash_attn",
            "type_k",
        ):
            if key in entry:
                out.setdefault("llama_bench", {})[key] = entry[key]
    return out


def run_llama_bench(
    ref: Reference, model: Path, threads: int, n_prompt: int, n_gen: int, repeat: int
) -> dict[str, Any]:
    """Run llama-bench (pp then tg, `repeat` times each) and summarize its samples."""
    cmd = [
        str(ref.llama_bench),
        "-m",
        str(model),
        "-p",
        str(n_prompt),
        "-n",
        str(n_gen),
        "-d",
        f"0,{n_prompt}",
        "-t",
        str(threads),
        "-r",
        str(repeat),
        "-o",
        "json",
    ]
    print(f"[bench] {' '.join(cmd)}", file=sys.stderr)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"llama-bench failed ({proc.returncode}): {proc.stderr[-2000:]}")
    result = parse_llama_bench(json.loads(proc.stdout))
    result["command"] = " ".join(cmd)
    return result
