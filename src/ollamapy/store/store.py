"""The on-disk model store, laid out byte for byte as Ollama lays out `$OLLAMA_MODELS`.

    <root>/blobs/sha256-<hex>                            content-addressed blobs
    <root>/blobs/sha256-<hex>-partial*                   resumable downloads (reserved)
    <root>/manifests/<host>/<namespace>/<model>/<tag>    one manifest per model name

Names are case-insensitive, as in Ollama. The rule that keeps an existing Ollama store
working unchanged: lookups resolve every path level exactly first and then ignoring case;
writes reuse whatever spelling already exists at each level and only create new
directories/files with the spelling given. So a name never gets a second, differently
cased manifest, and whatever Ollama wrote is found and shown under its own spelling.

Blob paths are only ever built from a validated `Digest`; manifest paths only from a
validated `ModelName`, and are then checked to lie inside `manifests/`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ollamapy.errors import (
    BadRequestError,
    InvalidDigestError,
    InvalidNameError,
    ModelNotFoundError,
    NotFoundError,
    OllamaError,
)
from ollamapy.store.errors import DigestMismatchError, InvalidManifestError, MissingBlobsError
from ollamapy.store.files import (
    TEMP_PREFIX,
    TempFile,
    copy_hashing,
    find_child,
    hash_file,
    is_inside,
    open_regular,
    read_capped,
    remove_empty_dirs,
    try_reflink,
    write_atomic,
)
from ollamapy.store.lock import StoreLock
from ollamapy.store.manifest import MAX_MANIFEST_BYTES, Manifest, MediaType
from ollamapy.store.model_config import MAX_CONFIG_BYTES, ModelConfig
from ollamapy.types import Digest, ModelName

log = logging.getLogger(__name__)

MAX_TEXT_BYTES = 16 * 1024 * 1024
"""Cap for blobs read into memory as text/JSON, so a model file is never slurped by mistake."""

PARTIAL_SUFFIX = "-partial"
_PARTIAL_RE = re.compile(r"sha256-[0-9a-f]{64}-partial.*", re.DOTALL)
_SUFFIX_RE = re.compile(r"[A-Za-z0-9_.-]*")
_ANY_DIGEST_RE = re.compile(rb"sha256[:-]([0-9a-f]{64})")
REMOVER_WAIT_S = 60.0
"""How long a delete or cleanup waits for other servers' manifest writes to finish."""


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One installed model, as `ollama list` and `/api/tags` report it."""

    name: ModelName
    """The name with the spelling found on disk."""
    manifest: Manifest
    digest: Digest
    """sha256 of the manifest file's bytes (what Ollama shows as the model's ID)."""
    size: int
    """Sum of the config and layer sizes."""
    modified_at: datetime
    """The manifest file's mtime, timezone-aware in local time."""


def is_partial_name(filename: str) -> bool:
    """True for names reserved for resumable downloads, which `prune` leaves alone."""
    return _PARTIAL_RE.fullmatch(filename) is not None


class Store:
    """Blobs and manifests under one root directory (`$OLLAMA_MODELS`)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blobs_dir = self.root / "blobs"
        self.manifests_dir = self.root / "manifests"
        self.lock = StoreLock(self.root)
        """Shared by manifest writers, exclusive for removers (see `store.lock`): other
        servers on the same directory take the same lock."""

    # ----------------------------------------------------------------- blobs

    def blob_path(self, digest: Digest) -> Path:
        """Where the blob for `digest` lives; the digest is re-validated, never trusted."""
        checked = Digest.parse(str(digest))
        return self.blobs_dir / checked.filename

    def partial_path(self, digest: Digest, suffix: str = "") -> Path:
        """A path in the reserved `sha256-<hex>-partial*` namespace for resumable pulls.

        `prune` never deletes these, so a registry download can resume after a restart.
        """
        if not _SUFFIX_RE.fullmatch(suffix):
            raise BadRequestError(f"invalid partial suffix: {suffix!r}")
        return self.blobs_dir / f"{self.blob_path(digest).name}{PARTIAL_SUFFIX}{suffix}"

    def has_blob(self, digest: Digest) -> bool:
        return self.blob_path(digest).is_file()

    def blob_size(self, digest: Digest) -> int:
        """Size in bytes of a stored blob; `NotFoundError` (404) when it is absent."""
        try:
            return self.blob_path(digest).stat().st_size
        except FileNotFoundError:
            raise NotFoundError(f"blob {digest} not found") from None

    def write_blob(
        self, chunks: Iterable[bytes], expected: Digest | None = None
    ) -> tuple[Digest, int]:
        """Store streamed bytes as a blob; returns (digest, size).

        The bytes are hashed while written to a temp file in `blobs/`; a digest mismatch
        or any exception removes the temp file, so nothing is left behind. Writing a
        blob that already exists is a no-op that still verifies the stream.
        """
        self.blobs_dir.mkdir(parents=True, exist_ok=True)
        with TempFile(self.blobs_dir) as tmp:
            hex_digest, size = _write_hashing(chunks, tmp)
            return self._commit_blob(tmp, Digest(hex_digest), size, expected)

    def write_blob_from_file(
        self, path: Path, expected: Digest | None = None
    ) -> tuple[Digest, int]:
        """Copy a local regular file into the store as a blob; returns (digest, size).

        FIFOs, devices and directories are refused before anything is opened, so this
        never blocks. On filesystems that support reflinks the copy is a free
        copy-on-write clone (the clone, not the original, is hashed, so later edits to
        the original can never corrupt the blob).
        """
        source_fd = open_regular(Path(path))
        try:
            self.blobs_dir.mkdir(parents=True, exist_ok=True)
            with TempFile(self.blobs_dir) as tmp:
                if try_reflink(source_fd, tmp.file.fileno()):
                    hex_digest, size = hash_file(tmp.file)
                else:
                    hex_digest, size = copy_hashing(source_fd, tmp.file)
                return self._commit_blob(tmp, Digest(hex_digest), size, expected)
        finally:
            os.close(source_fd)

    def _commit_blob(
        self, tmp: TempFile, digest: Digest, size: int, expected: Digest | None
    ) -> tuple[Digest, int]:
        if expected is not None and expected != digest:
            raise DigestMismatchError(expected, digest)
        final = self.blob_path(digest)
        if final.is_file():
            tmp.discard()
        else:
            tmp.commit(final)
        return digest, size

    def read_blob_bytes(self, digest: Digest, *, limit: int = MAX_TEXT_BYTES) -> bytes:
        """A small blob's bytes; a missing blob is a 404, one over `limit` a 400."""
        path = self.blob_path(digest)
        try:
            data = read_capped(path, limit)
        except NotFoundError:
            raise NotFoundError(f"blob {digest} not found") from None
        if data is None:
            raise BadRequestError(f"blob {digest} is larger than {limit} bytes")
        return data

    def read_blob_text(self, digest: Digest, *, limit: int = MAX_TEXT_BYTES) -> str:
        """A text layer (template, system, license) decoded as UTF-8, bad bytes replaced."""
        return self.read_blob_bytes(digest, limit=limit).decode("utf-8", errors="replace")

    def read_blob_json(self, digest: Digest, *, limit: int = MAX_TEXT_BYTES) -> Any:
        """A JSON layer (params, messages, config) decoded; invalid JSON is a 400."""
        try:
            return json.loads(self.read_blob_bytes(digest, limit=limit))
        except (ValueError, RecursionError):
            raise BadRequestError(f"blob {digest} is not valid JSON") from None

    # ------------------------------------------------------- layer contents

    def read_config(self, manifest: Manifest) -> ModelConfig:
        """The manifest's config blob as a `ModelConfig`."""
        data = self.read_blob_bytes(manifest.config.digest, limit=MAX_CONFIG_BYTES)
        return ModelConfig.parse(data)

    def read_layer_text(self, manifest: Manifest, media_type: str) -> str | None:
        """Text of the last layer of `media_type` (the one Ollama uses), or None."""
        layer = manifest.last_layer(media_type)
        return None if layer is None else self.read_blob_text(layer.digest)

    def read_layer_texts(self, manifest: Manifest, media_type: str) -> list[str]:
        """Text of every layer of `media_type` in order (licenses can be several)."""
        return [self.read_blob_text(layer.digest) for layer in manifest.layers_of(media_type)]

    def read_params(self, manifest: Manifest) -> dict[str, Any]:
        """Parameters from all params layers, later keys overriding earlier ones."""
        params: dict[str, Any] = {}
        for layer in manifest.layers_of(MediaType.PARAMS):
            value = self.read_blob_json(layer.digest)
            if not isinstance(value, dict):
                raise BadRequestError(f"params blob {layer.digest} is not a JSON object")
            params.update(value)
        return params

    def read_messages(self, manifest: Manifest) -> list[dict[str, Any]]:
        """Messages of the last messages layer, or an empty list."""
        layer = manifest.last_layer(MediaType.MESSAGES)
        if layer is None:
            return []
        value = self.read_blob_json(layer.digest)
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise BadRequestError(f"messages blob {layer.digest} is not a list of objects")
        return value

    # ------------------------------------------------------------- manifests

    def read_manifest(self, name: ModelName) -> Manifest:
        """The manifest for `name` (matched ignoring case); `ModelNotFoundError` if none."""
        return Manifest.parse(self.read_manifest_bytes(name))

    def read_manifest_bytes(self, name: ModelName) -> bytes:
        """The manifest file's raw bytes (what a push uploads and the digest is taken of)."""
        path = self._find_manifest(name)
        if path is None:
            raise ModelNotFoundError(name.display)
        return _read_manifest_file(path)

    def entry(self, name: ModelName) -> ModelEntry:
        """Everything `list` reports, for one model."""
        path = self._find_manifest(name)
        if path is None:
            raise ModelNotFoundError(name.display)
        return _entry_for(_name_from_path(path, self.manifests_dir) or name, path)

    def write_manifest(self, name: ModelName, manifest: Manifest) -> Digest:
        """Write `manifest` as Ollama would; returns the digest of the bytes written."""
        return self.write_manifest_bytes(name, manifest.to_bytes())

    def write_manifest_bytes(self, name: ModelName, data: bytes) -> Digest:
        """Validate and store manifest bytes unchanged (a pull keeps the registry's bytes,
        so the local digest equals the registry's). Temp file + atomic rename: a failure
        leaves the previous manifest, or none, never half of one."""
        manifest = Manifest.parse(data)
        with self.lock.shared():
            self._check_blobs_present(manifest)
            path = self._manifest_target(name)
            created = self._make_parents(path.parent)
            try:
                write_atomic(path, data)
            except BaseException:
                if created is not None:
                    remove_empty_dirs(path.parent, created.parent)
                raise
        return Digest.of_bytes(data)

    def _check_blobs_present(self, manifest: Manifest) -> None:
        """Refuse a manifest whose blobs are not all in the store: it would be a half
        model. Called under the shared lock, so no remover can take a blob away between
        this check and the manifest becoming visible."""
        missing = sorted(str(d) for d in manifest.digests if not self.has_blob(d))
        if missing:
            raise MissingBlobsError(missing)

    def list_models(self) -> list[ModelEntry]:
        """Every readable model, newest first (as `ollama list` orders them).

        Manifests that fail to parse are logged and skipped rather than failing the list.
        """
        entries: list[ModelEntry] = []
        for name, path in self._iter_manifests():
            try:
                entries.append(_entry_for(name, path))
            except (OllamaError, OSError) as exc:
                log.warning("skipping manifest %s: %s", path, exc)
        entries.sort(key=lambda entry: (-entry.modified_at.timestamp(), entry.name.display))
        return entries

    def copy(self, source: ModelName, destination: ModelName) -> None:
        """Give `destination` the same manifest bytes (and so the same digest) as `source`."""
        self.write_manifest_bytes(destination, self.read_manifest_bytes(source))

    def delete(self, name: ModelName, *, noprune: bool = False) -> list[Digest]:
        """Remove a model's manifest and, unless `noprune`, the blobs only it used.

        Returns the digests of the blobs removed. Empty parent directories go too.
        """
        with self.lock.exclusive(REMOVER_WAIT_S):
            path = self._find_manifest(name)
            if path is None:
                raise ModelNotFoundError(name.display)
            candidates = _references(path)
            path.unlink()
            remove_empty_dirs(path.parent, self.manifests_dir)
            if noprune:
                return []
            return self._remove_blobs(candidates - self._live_references())

    def remove_unreferenced(self, digests: Iterable[Digest]) -> list[Digest]:
        """Remove those of `digests` that no manifest references (e.g. blobs written by a
        create that then failed); returns the ones removed. Corrupt manifests still
        protect every digest they mention. Holds the store lock exclusive, so another
        server cannot reference one of them meanwhile."""
        with self.lock.exclusive(REMOVER_WAIT_S):
            return self._remove_blobs(set(digests) - self._live_references())

    def prune(self, *, grace_s: float = 0.0) -> list[Path]:
        """Startup cleanup: remove leftover temp files and blobs no manifest references.

        Files named `sha256-<hex>-partial*` are kept for resumable downloads. With
        replicas on one store, another server may be mid-create (its temp files still
        growing, its new blobs not yet in a manifest): `grace_s` keeps every file
        modified within that many seconds, as `git gc` keeps recent loose objects.
        """
        with self.lock.exclusive(REMOVER_WAIT_S):
            removed = self.cleanup_temp(grace_s=grace_s)
            live = self._live_references()
            unused = {
                digest
                for digest in self._blob_digests()
                if digest not in live and _older_than(self.blob_path(digest), grace_s)
            }
            removed += [self.blob_path(digest) for digest in self._remove_blobs(unused)]
            self._remove_empty_manifest_dirs()
            return removed

    def cleanup_temp(self, *, grace_s: float = 0.0) -> list[Path]:
        """Remove our crash leftovers (and, like Ollama, any non-blob file in `blobs/`),
        keeping partial downloads and files modified within `grace_s` seconds (another
        server's writes in progress). Safe with `OLLAMA_NOPRUNE`: it never touches data."""
        junk = [path for path in _files(self.blobs_dir) if _is_blob_junk(path.name)]
        for directory, _dirs, files in os.walk(self.manifests_dir):
            junk += [Path(directory, f) for f in files if f.startswith(TEMP_PREFIX)]
        removed = [path for path in junk if _older_than(path, grace_s)]
        for path in removed:
            path.unlink(missing_ok=True)
        return removed

    # -------------------------------------------------------------- helpers

    def _checked_path(self, name: ModelName) -> Path:
        name.validate()
        path = self.manifests_dir.joinpath(*name.manifest_parts)
        if not is_inside(path, self.manifests_dir):
            raise InvalidNameError(f"invalid model name: {name.display!r}")
        return path

    def _find_manifest(self, name: ModelName) -> Path | None:
        """The existing manifest file for `name`, each level matched ignoring case."""
        self._checked_path(name)
        directory = self.manifests_dir
        for part in name.manifest_parts[:-1]:
            found = find_child(directory, part, "dir")
            if found is None:
                return None
            directory = found
        return find_child(directory, name.tag, "file")

    def _manifest_target(self, name: ModelName) -> Path:
        """Where to write `name`: existing spellings reused level by level, else as given."""
        self._checked_path(name)
        directory = self.manifests_dir
        for part in name.manifest_parts[:-1]:
            directory = find_child(directory, part, "dir") or directory / part
        return find_child(directory, name.tag, "file") or directory / name.tag

    def _make_parents(self, directory: Path) -> Path | None:
        """mkdir -p, returning the topmost directory created (to undo on failure)."""
        missing = [d for d in (directory, *directory.parents) if not d.exists()]
        directory.mkdir(parents=True, exist_ok=True)
        return missing[-1] if missing else None

    def _iter_manifests(self) -> Iterator[tuple[ModelName, Path]]:
        """(name, path) for every file at manifests/<host>/<ns>/<model>/<tag>."""
        for path in sorted(self.manifests_dir.glob("*/*/*/*")):
            name = _name_from_path(path, self.manifests_dir)
            if name is not None and path.is_file():
                yield name, path

    def _live_references(self) -> set[Digest]:
        """Digests referenced by any file in `manifests/`, read as leniently as possible.

        Deleting a blob that is still needed is unrecoverable, so every file counts,
        even one with an odd name or unparsable content (then any digest in it counts).
        """
        live: set[Digest] = set()
        for directory, _dirs, files in os.walk(self.manifests_dir):
            for filename in files:
                live |= _references(Path(directory, filename))
        return live

    def _blob_digests(self) -> list[Digest]:
        """Digests of the files in `blobs/` named exactly `sha256-<hex>`."""
        digests = []
        for path in _files(self.blobs_dir):
            try:
                digest = Digest.parse(path.name)
            except InvalidDigestError:
                continue
            if path.name == digest.filename:
                digests.append(digest)
        return digests

    def _remove_blobs(self, digests: Iterable[Digest]) -> list[Digest]:
        removed = []
        for digest in sorted(digests, key=str):
            path = self.blob_path(digest)
            if path.is_file():
                path.unlink()
                removed.append(digest)
        return removed

    def _remove_empty_manifest_dirs(self) -> None:
        for directory, dirs, files in os.walk(self.manifests_dir, topdown=False):
            if not dirs and not files and Path(directory) != self.manifests_dir:
                remove_empty_dirs(Path(directory), self.manifests_dir)


def _write_hashing(chunks: Iterable[bytes], tmp: TempFile) -> tuple[str, int]:
    hasher, size = hashlib.sha256(), 0
    for chunk in chunks:
        hasher.update(chunk)
        tmp.file.write(chunk)
        size += len(chunk)
    return hasher.hexdigest(), size


def _read_manifest_file(path: Path) -> bytes:
    data = read_capped(path, MAX_MANIFEST_BYTES)
    if data is None:
        raise InvalidManifestError(f"invalid manifest: larger than {MAX_MANIFEST_BYTES} bytes")
    return data


def _entry_for(name: ModelName, path: Path) -> ModelEntry:
    data = _read_manifest_file(path)
    manifest = Manifest.parse(data)
    mtime = datetime.fromtimestamp(path.stat().st_mtime).astimezone()
    return ModelEntry(name, manifest, Digest.of_bytes(data), manifest.total_size, mtime)


def _name_from_path(path: Path, manifests_dir: Path) -> ModelName | None:
    """The model name a manifest path spells, or None when it is not a valid name."""
    parts = path.relative_to(manifests_dir).parts
    if len(parts) != 4:
        return None
    name = ModelName(*parts)
    try:
        name.validate()
    except InvalidNameError:
        return None
    return name


def _references(path: Path) -> set[Digest]:
    """Blobs a manifest file keeps alive; every digest-looking string if it won't parse."""
    try:
        data = read_capped(path, MAX_MANIFEST_BYTES)
        if data is None:
            with path.open("rb") as handle:
                data = handle.read()
    except (OllamaError, OSError):
        return set()
    try:
        return set(Manifest.parse(data).digests)
    except InvalidManifestError:
        return {Digest(match.decode()) for match in _ANY_DIGEST_RE.findall(data)}


def _older_than(path: Path, seconds: float) -> bool:
    """Whether `path` was last modified more than `seconds` ago (a vanished file is not)."""
    if seconds <= 0:
        return True
    try:
        return time.time() - path.stat().st_mtime > seconds
    except FileNotFoundError:
        return False


def _files(directory: Path) -> list[Path]:
    try:
        with os.scandir(directory) as entries:
            return [Path(e.path) for e in entries if e.is_file(follow_symlinks=False)]
    except FileNotFoundError:
        return []


def _is_blob_junk(filename: str) -> bool:
    """Not a blob and not a reserved partial download: a temp file left by a crash."""
    if is_partial_name(filename):
        return False
    try:
        Digest.parse(filename)
    except InvalidDigestError:
        return True
    return False
