"""What a FROM (or ADAPTER) value points at: a blob, a local file or directory, or a model.

Ollama decides by trying the value as a path relative to the Modelfile's directory and falling
back to a model name when nothing is there. `blob_digest` and `looks_like_path` are pure;
`classify_from` is the one function that looks at the filesystem.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from ollamapy.types.digest import Digest

_BLOB = re.compile(r"@?(sha256:[0-9a-f]{64})")
_PATH_PREFIXES = ("/", "./", "../", "~")


class FromKind(StrEnum):
    BLOB = "blob"
    FILE = "file"
    DIRECTORY = "directory"
    MODEL = "model"


@dataclass(frozen=True, slots=True)
class FromSource:
    """A classified FROM value. `path` is set for FILE and DIRECTORY, `digest` for BLOB;
    `value` is the text as written (the model name, for MODEL)."""

    kind: FromKind
    value: str
    path: Path | None = None
    digest: Digest | None = None


def blob_digest(value: str) -> Digest | None:
    """The digest of a `@sha256:<hex>` or `sha256:<hex>` value, else None."""
    match = _BLOB.fullmatch(value)
    return Digest.parse(match.group(1)) if match else None


def looks_like_path(value: str) -> bool:
    """True when the value can only be a path: absolute, `./`, `../`, `~` or `.`/`..`."""
    return value in (".", "..") or value.startswith(_PATH_PREFIXES)


def expand_path(value: str, base_dir: str | os.PathLike[str]) -> Path:
    """Resolve `~` and make a relative path relative to the Modelfile's directory."""
    path = Path(os.path.expanduser(value))
    return Path(os.path.abspath(Path(base_dir) / path))


def classify_from(value: str, base_dir: str | os.PathLike[str]) -> FromSource:
    """Classify a FROM value; `base_dir` is the directory holding the Modelfile.

    An explicit path (see `looks_like_path`) is a FILE even when nothing exists there yet,
    so that opening it reports the missing file; any other value is a path only when
    something exists at it, else it is a model name.
    """
    digest = blob_digest(value)
    if digest is not None:
        return FromSource(FromKind.BLOB, value, digest=digest)
    path = expand_path(value, base_dir)
    if path.is_dir():
        return FromSource(FromKind.DIRECTORY, value, path=path)
    if looks_like_path(value) or path.exists():
        return FromSource(FromKind.FILE, value, path=path)
    return FromSource(FromKind.MODEL, value)
