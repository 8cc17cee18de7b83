"""Filesystem primitives the store is built from: temp files that commit atomically or
vanish, reads that never block on special files, case-insensitive child lookup.

Every temp file the store creates starts with `TEMP_PREFIX`. Such names can never be a
blob (`sha256-…`) or a valid manifest tag (tags start with a letter, digit or `_`), so a
crash leaves nothing that Ollama or we would mistake for data, and `Store.prune` can
remove the leftovers.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Literal

from ollamapy.errors import BadRequestError, NotFoundError

TEMP_PREFIX = ".tmp-"
COPY_CHUNK = 1024 * 1024
_FICLONE = 0x40049409  # linux/fs.h; fcntl.FICLONE exists only from Python 3.12


class TempFile:
    """A temp file next to its destination: `commit` renames it in, anything else deletes it.

    Keeping the temp file in the destination directory makes the final `os.replace`
    atomic (same filesystem), so readers see either the old file or the whole new one.
    """

    def __init__(self, directory: Path) -> None:
        fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=directory)
        self.path = Path(name)
        self.file: BinaryIO = os.fdopen(fd, "w+b")

    def __enter__(self) -> TempFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.discard()

    def commit(self, destination: Path) -> None:
        """Flush to disk and atomically move into place (replacing what is there)."""
        self.file.flush()
        os.fsync(self.file.fileno())
        os.fchmod(self.file.fileno(), 0o644)
        self.file.close()
        os.replace(self.path, destination)

    def discard(self) -> None:
        """Remove the temp file if it was not committed; safe to call twice."""
        if not self.file.closed:
            self.file.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that no reader ever sees a partial file."""
    with TempFile(path.parent) as tmp:
        tmp.file.write(data)
        tmp.commit(path)


def open_regular(path: Path) -> int:
    """Open a regular file for reading without ever blocking on a FIFO or device.

    The `stat` before opening refuses special files up front; `O_NONBLOCK` plus the
    `fstat` after opening closes the race where the path is swapped in between.
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise BadRequestError(f"{path} is not a regular file")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        raise NotFoundError(f"file not found: {path}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise BadRequestError(f"{path} is not a regular file")
    return fd


def read_capped(path: Path, limit: int) -> bytes | None:
    """Read a whole regular file, or return None when it is longer than `limit` bytes."""
    fd = open_regular(path)
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(limit + 1)
    return None if len(data) > limit else data


def try_reflink(source_fd: int, target_fd: int) -> bool:
    """Clone `source_fd` into `target_fd` copy-on-write (btrfs, XFS); False when unsupported.

    A reflink costs no space and no copy time, and unlike a hardlink the store's copy
    stays intact if the user later edits the original file.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on Linux/macOS
        return False
    try:
        fcntl.ioctl(target_fd, getattr(fcntl, "FICLONE", _FICLONE), source_fd)
    except OSError:
        return False
    return True


def copy_hashing(source_fd: int, target: BinaryIO) -> tuple[str, int]:
    """Copy from `source_fd` into `target`, returning (sha256 hex, byte count)."""
    hasher, size = hashlib.sha256(), 0
    while chunk := os.read(source_fd, COPY_CHUNK):
        hasher.update(chunk)
        target.write(chunk)
        size += len(chunk)
    return hasher.hexdigest(), size


def hash_file(handle: BinaryIO) -> tuple[str, int]:
    """Hash an open file from its start, returning (sha256 hex, byte count)."""
    handle.seek(0)
    hasher, size = hashlib.sha256(), 0
    while chunk := handle.read(COPY_CHUNK):
        hasher.update(chunk)
        size += len(chunk)
    return hasher.hexdigest(), size


def find_child(directory: Path, name: str, kind: Literal["dir", "file"]) -> Path | None:
    """The child of `directory` named `name`, matched exactly first, then ignoring case.

    Ollama matches model names case-insensitively; resolving each path level this way
    finds a hand-made or Ollama-made `Library/Foo` when asked for `library/foo`. When
    several spellings exist (only possible on a case-sensitive filesystem), the exact
    one wins, then the first in sorted order, so the answer is deterministic.
    """
    exact = directory / name
    if _is_kind(exact, kind):
        return exact
    try:
        names = sorted(os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return None
    wanted = name.lower()
    for candidate in names:
        path = directory / candidate
        if candidate.lower() == wanted and _is_kind(path, kind):
            return path
    return None


def _is_kind(path: Path, kind: Literal["dir", "file"]) -> bool:
    return path.is_dir() if kind == "dir" else path.is_file()


def remove_empty_dirs(start: Path, stop: Path) -> None:
    """Remove `start` and its parents while empty, never removing `stop` or above it."""
    current = start
    while current != stop and current.is_relative_to(stop):
        try:
            current.rmdir()
        except OSError:
            return
        current = current.parent


def is_inside(path: Path, base: Path) -> bool:
    """Lexical containment check that still works when `base` or a subfolder is a symlink."""
    normal = os.path.normpath(path)
    root = os.path.normpath(base)
    return normal.startswith(root + os.sep)
