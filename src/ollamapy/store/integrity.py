"""The store's own integrity check: every manifest parses, and every blob it names is in
`blobs/` with the size the manifest says and the sha256 its name says.

This is what "the store is consistent" means after replicas raced on it: a model is either
absent or whole. Leftover partial downloads and temp files are not problems (the next pull
resumes them, the next prune removes them); unreferenced blobs are not either (garbage,
not damage). `python -m ollamapy.store.integrity <dir>` runs it without a server.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from ollamapy.errors import OllamaError
from ollamapy.store.files import COPY_CHUNK, TEMP_PREFIX
from ollamapy.store.manifest import MAX_MANIFEST_BYTES, Manifest
from ollamapy.store.store import Store
from ollamapy.types import Digest


def check_store(store: Store, *, hash_blobs: bool = True) -> list[str]:
    """Every problem found, one sentence each (an empty list: the store is consistent).

    Holds the store lock shared, so a delete on another server cannot take a model's
    blobs away halfway through the look (deletes wait meanwhile: with `hash_blobs`
    off only sizes are compared, which is quick on any store)."""
    with store.lock.shared():
        return _problems(store, hash_blobs)


def _problems(store: Store, hash_blobs: bool) -> list[str]:
    problems: list[str] = []
    verified: dict[Digest, int | None] = {}
    for path in _manifest_files(store.manifests_dir):
        where = path.relative_to(store.manifests_dir)
        try:
            manifest = Manifest.parse(_read(path))
        except (OllamaError, OSError) as exc:
            problems.append(f"manifest {where}: unreadable: {exc}")
            continue
        for layer in (manifest.config, *manifest.layers):
            if layer.digest not in verified:
                path = store.blob_path(layer.digest)
                verified[layer.digest] = (
                    _verified_size(path, layer.digest) if hash_blobs else _size(path)
                )
            size = verified[layer.digest]
            if size is None:
                problems.append(f"manifest {where}: blob {layer.digest} missing or corrupt")
            elif size != layer.size:
                problems.append(
                    f"manifest {where}: blob {layer.digest} has {size} bytes, not {layer.size}"
                )
    return problems


def _manifest_files(root: Path) -> list[Path]:
    found = []
    for directory, _dirs, files in os.walk(root):
        found += [Path(directory, f) for f in files if not f.startswith(TEMP_PREFIX)]
    return sorted(found)


def _read(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(MAX_MANIFEST_BYTES + 1)


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def _verified_size(path: Path, digest: Digest) -> int | None:
    """The blob's size when its bytes hash to `digest`; None when it is absent or not."""
    hasher, size = hashlib.sha256(), 0
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(COPY_CHUNK):
                hasher.update(chunk)
                size += len(chunk)
    except OSError:
        return None
    return size if Digest(hasher.hexdigest()) == digest else None


def main(argv: list[str]) -> int:
    """Check the store at argv[0]; print each problem; exit 1 if there are any."""
    if len(argv) != 1:
        print("usage: python -m ollamapy.store.integrity <models directory>", file=sys.stderr)
        return 2
    problems = check_store(Store(Path(argv[0])))
    for problem in problems:
        print(problem)
    print("store is consistent" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
