"""The prompt cache beyond the slots: KV prefixes kept in host RAM and on disk.

A slot's KV cache is lost when the slot is reused for another conversation, and every
slot's is lost when the runner stops. This module keeps them:

* `HostCache`: entries keyed by their token list, each the llama.cpp per-sequence state of
  a slot whose cache held those tokens (`Context.seq_state_get`). LRU by bytes, bounded
  by `OLLAMA_PROMPT_CACHE`. An entry whose tokens are a prefix of a newer entry's is
  dropped (the newer one serves every prompt the older one did).
* `DiskStore`: on unload the most valuable prefixes (the slots' caches, then the host
  entries, most recent first) are written to `<dir>/<model key>/*.kvc`, bounded by the
  same size. Each file carries a header naming the model identity and the llama.cpp build
  and a SHA-256 of its payload; the next runner lists them at load (reading only headers
  and token lists) and reads a payload only when a prompt needs it. A file that is corrupt
  or was written for another model or build is removed, never loaded.
* `PromptCache`: what the engine calls: `stash` a slot's cache before it is overwritten,
  `find` the entry sharing the longest prefix with a prompt, `restore` it into a slot's
  sequence (set the state, then cut it to the shared prefix), and `persist` at shutdown.

The engine runs all of this on its own thread; nothing here is thread-safe.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import os
import struct
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, TypeAlias

log = logging.getLogger(__name__)

CacheSource: TypeAlias = Literal["", "slot", "host", "disk"]
"""Where the reused part of a prompt came from ("" when nothing was reused)."""

MAGIC = b"OLLAMAPY-KVCACHE\x01"
SUFFIX = ".kvc"
PERSIST_SECONDS = 5.0
"""How long `persist` may write: the server kills a runner that takes 10 s to stop."""


class SeqState(Protocol):
    """The slice of `native.Context` the cache needs (a fake in the unit tests)."""

    def seq_state_get(self, seq: int) -> bytes: ...

    def seq_state_set(self, seq: int, data: bytes) -> bool: ...

    def seq_rm(self, seq: int, p0: int, p1: int) -> bool: ...


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def text_prefix(tokens: Sequence[int]) -> Sequence[int]:
    """The tokens before the first image position (a negative id)."""
    for i, token in enumerate(tokens):
        if token < 0:
            return tokens[:i]
    return tokens


def _is_prefix(short: Sequence[int], long: Sequence[int]) -> bool:
    return len(short) <= len(long) and common_prefix(short, long) == len(short)


@dataclass(eq=False)
class Entry:
    """One cached prefix: its tokens and its state, in RAM (`data`) or in a file (`path`)."""

    tokens: tuple[int, ...]
    size: int
    data: bytes | None = None
    path: Path | None = None

    @property
    def source(self) -> CacheSource:
        return "host" if self.data is not None else "disk"


def _ranks(entry: Entry) -> int:
    return 1 if entry.data is not None else 0


class HostCache:
    """Entries in LRU order; those in RAM are bounded to `budget` bytes in all.

    Entries backed by a file cost no RAM until read, so they are not counted.
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.used = 0
        self._entries: collections.OrderedDict[int, Entry] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> list[Entry]:
        """Every entry, most recently used first."""
        return list(reversed(self._entries.values()))

    def add(self, entry: Entry) -> bool:
        """Insert (as most recent) and evict the least recent RAM entries over budget;
        False if the entry alone is larger than the budget or a newer one covers it."""
        if entry.data is not None and entry.size > self.budget:
            return False
        for old in list(self._entries.values()):
            if _is_prefix(entry.tokens, old.tokens) and (
                old.data is not None or entry.data is None
            ):
                self.touch(old)
                return False
            if _is_prefix(old.tokens, entry.tokens) and (
                entry.data is not None or old.data is None
            ):
                self.remove(old)
        self._entries[id(entry)] = entry
        if entry.data is not None:
            self.used += entry.size
        self._evict()
        return True

    def best(self, prompt: Sequence[int]) -> tuple[Entry | None, int]:
        """The entry sharing the longest prefix with `prompt`, and that length."""
        best: Entry | None = None
        length = 0
        for entry in self._entries.values():
            shared = common_prefix(entry.tokens, prompt)
            if shared > length:
                best, length = entry, shared
        return best, length

    def touch(self, entry: Entry) -> None:
        self._entries.move_to_end(id(entry))

    def remove(self, entry: Entry) -> None:
        if self._entries.pop(id(entry), None) is not None and entry.data is not None:
            self.used -= entry.size

    def _evict(self) -> None:
        for entry in list(self._entries.values()):
            if self.used <= self.budget:
                return
            if entry.data is not None:
                self.remove(entry)


# --------------------------------------------------------------------------- disk


class CacheFileError(ValueError):
    """A cache file that must not be loaded: corrupt, truncated or for another model."""


@dataclass(frozen=True)
class DiskStore:
    """The cache files of one model: `directory` holds them, `identity` (model file,
    adapters, KV settings) and `build` (llama.cpp version and CPU features) must match."""

    directory: Path
    identity: str
    build: str
    budget: int

    def write(self, tokens: Sequence[int], data: bytes) -> Path:
        """Write one entry atomically (a temporary file renamed into place); a file for
        the same tokens already there is kept as it is (the same prefix, the same KV)."""
        path = self.path_for(tokens)
        if path.is_file():
            return path
        payload = struct.pack(f"<{len(tokens)}i", *tokens) + data
        header = {
            "model": self.identity,
            "build": self.build,
            "n_tokens": len(tokens),
            "size": len(payload),
            "sha256": hashlib.sha256(payload).hexdigest(),
        }
        raw = json.dumps(header).encode()
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as f:
            f.write(MAGIC + struct.pack("<I", len(raw)) + raw + payload)
        os.replace(tmp, path)
        return path

    def path_for(self, tokens: Sequence[int]) -> Path:
        """The file of the entry for `tokens` (named by their hash)."""
        digest = hashlib.sha256(struct.pack(f"<{len(tokens)}i", *tokens)).hexdigest()
        return self.directory / (digest[:32] + SUFFIX)

    def scan(self) -> list[Entry]:
        """The usable files' entries, oldest first; unusable files are removed."""
        if not self.directory.is_dir():
            return []
        entries: list[tuple[float, Entry]] = []
        for path in self.directory.iterdir():
            if path.suffix != SUFFIX:
                if path.suffix == ".tmp":
                    _remove(path, "an interrupted write")
                continue
            try:
                header, tokens, _ = self._read(path, payload=False)
                entries.append((path.stat().st_mtime, Entry(tokens, header["size"], path=path)))
            except (OSError, CacheFileError) as exc:
                _remove(path, str(exc))
        return [entry for _, entry in sorted(entries, key=lambda pair: pair[0])]

    def load(self, entry: Entry) -> bytes | None:
        """The entry's state, checked; None (and the file removed) if it is unusable."""
        assert entry.path is not None
        try:
            _, tokens, data = self._read(entry.path, payload=True)
            if tokens != entry.tokens:
                raise CacheFileError("the file changed since it was listed")
            return data
        except (OSError, CacheFileError) as exc:
            _remove(entry.path, str(exc))
            return None

    def _read(self, path: Path, *, payload: bool) -> tuple[dict[str, int], tuple[int, ...], bytes]:
        with path.open("rb") as f:
            if f.read(len(MAGIC)) != MAGIC:
                raise CacheFileError("not a prompt cache file")
            (length,) = struct.unpack("<I", _exact(f.read(4), 4))
            try:
                header = json.loads(_exact(f.read(length), length))
            except ValueError as exc:
                raise CacheFileError(f"bad header: {exc}") from None
            if not isinstance(header, dict):
                raise CacheFileError("bad header")
            if header.get("model") != self.identity:
                raise CacheFileError("written for another model")
            if header.get("build") != self.build:
                raise CacheFileError("written by another llama.cpp build")
            n, size = header.get("n_tokens"), header.get("size")
            if not isinstance(n, int) or not isinstance(size, int) or not 0 < 4 * n <= size:
                raise CacheFileError("bad header")
            token_bytes = _exact(f.read(4 * n), 4 * n)
            tokens = struct.unpack(f"<{n}i", token_bytes)
            if not payload:
                return header, tokens, b""
            rest = f.read(size - 4 * n + 1)
        body = token_bytes + rest
        if len(body) != size or hashlib.sha256(body).hexdigest() != header.get("sha256"):
            raise CacheFileError("checksum mismatch")
        return header, tokens, rest


def _file_size(path: Path) -> int | None:
    try:
        return path.stat().st_size if path.is_file() else None
    except OSError:
        return None


def _exact(data: bytes, n: int) -> bytes:
    if len(data) != n:
        raise CacheFileError("truncated")
    return data


def _remove(path: Path, why: str) -> None:
    log.warning("removing prompt cache file %s: %s", path.name, why)
    try:
        path.unlink()
    except OSError:
        log.debug("could not remove %s", path, exc_info=True)


# --------------------------------------------------------------------------- engine side


@dataclass
class CacheStats:
    """Totals since load: entries stashed/restored and prompt tokens each source served."""

    stashed: int = 0
    restored_host: int = 0
    restored_disk: int = 0
    tokens_host: int = 0
    tokens_disk: int = 0


class PromptCache:
    """The engine's prompt cache over one context's sequences."""

    def __init__(
        self,
        state: SeqState,
        budget: int,
        *,
        store: DiskStore | None = None,
        min_tokens: int = 16,
    ) -> None:
        self._state = state
        self.host = HostCache(budget)
        self.store = store
        self.min_tokens = min_tokens
        self.stats = CacheStats()
        if store is not None:
            for entry in store.scan():
                self.host.add(entry)

    def stash(self, seq: int, tokens: Sequence[int]) -> None:
        """Keep the KV of `seq`, which holds exactly `tokens`, before it is overwritten.

        Only the text before the first image is kept usable: image positions are ids
        (negative) that name an image only within one runner process, so a restore is
        never matched on them (the state past that point is cut off when restored)."""
        tokens = text_prefix(tokens)
        if len(tokens) < self.min_tokens:
            return
        data = self._state.seq_state_get(seq)
        if data and self.host.add(Entry(tuple(tokens), len(data), data=data)):
            self.stats.stashed += 1
            log.debug(
                "prompt cache: stashed %d tokens of seq %d (%d bytes)", len(tokens), seq, len(data)
            )

    def find(self, prompt: Sequence[int]) -> tuple[Entry | None, int]:
        return self.host.best(prompt)

    def restore(self, seq: int, entry: Entry, length: int) -> bool:
        """Make `seq` hold the first `length` tokens of `entry`; False (and `seq`
        empty) when the entry could not be used, which is then dropped."""
        data = entry.data
        if data is None and self.store is not None:
            data = self.store.load(entry)
        self._state.seq_rm(seq, -1, -1)
        if data is None or not self._state.seq_state_set(seq, data):
            log.warning("prompt cache: could not restore an entry of %d tokens", len(entry.tokens))
            self.host.remove(entry)
            self._state.seq_rm(seq, -1, -1)
            return False
        if not self._state.seq_rm(seq, length, -1):  # the state may hold more than tokens
            self._state.seq_rm(seq, -1, -1)
            return False
        self.host.touch(entry)
        if entry.source == "host":
            self.stats.restored_host += 1
            self.stats.tokens_host += length
        else:
            self.stats.restored_disk += 1
            self.stats.tokens_disk += length
        return True

    def persist(self, slots: Iterable[tuple[int, Sequence[int]]]) -> int:
        """Write the most valuable prefixes to disk (the slots' caches, most recent slot
        first, then host and disk entries, most recent first) up to the store's budget,
        and remove the files not chosen. Returns the number of files written."""
        store = self.store
        if store is None:
            return 0
        deadline = time.monotonic() + PERSIST_SECONDS
        chosen: list[tuple[int, ...]] = []
        kept: set[Path] = set()
        used = written = 0

        def covered(tokens: tuple[int, ...]) -> bool:
            return any(_is_prefix(tokens, other) for other in chosen)

        candidates: list[tuple[tuple[int, ...], int | Entry]] = [
            (tuple(text_prefix(tokens)), seq) for seq, tokens in slots
        ]
        candidates = [c for c in candidates if len(c[0]) >= self.min_tokens]
        candidates += [(entry.tokens, entry) for entry in self.host.entries()]
        for tokens, source in candidates:
            if covered(tokens) or time.monotonic() > deadline:
                continue
            if isinstance(source, Entry) and source.path is not None and source.data is None:
                if used + source.size <= store.budget:  # already a file: keep it
                    chosen.append(tokens)
                    kept.add(source.path)
                    used += source.size
                continue
            existing = store.path_for(tokens)
            size = _file_size(existing)
            if size is not None:  # saved before and listed or restored since: keep it
                if used + size <= store.budget:
                    chosen.append(tokens)
                    kept.add(existing)
                    used += size
                continue
            data = self._state.seq_state_get(source) if isinstance(source, int) else source.data
            if not data or used + len(data) + 4 * len(tokens) > store.budget:
                continue
            try:
                kept.add(store.write(tokens, data))
            except OSError:
                log.warning("prompt cache: could not write to %s", store.directory, exc_info=True)
                break
            chosen.append(tokens)
            used += len(data) + 4 * len(tokens)
            written += 1
        if store.directory.is_dir():
            for path in store.directory.glob(f"*{SUFFIX}"):
                if path not in kept:
                    _remove(path, "not among the prefixes kept")
        return written


def model_key(identity: str) -> str:
    """The cache directory name of a model identity."""
    return hashlib.sha256(identity.encode()).hexdigest()[:24]


def model_identity(
    model: str, adapters: Sequence[str] = (), *, kv_cache_type: str | None, flash: bool | None
) -> str:
    """What a saved KV state depends on besides the build: the model file (its digest
    when it is a store blob named `sha256-<hex>`, else its path, size and mtime), the
    LoRA adapters and the KV cache settings."""
    parts = [_file_identity(model), *(_file_identity(a) for a in adapters)]
    parts.append(f"kv={kv_cache_type or 'f16'} fa={flash}")
    return "; ".join(parts)


def _file_identity(path: str) -> str:
    name = Path(path).name
    if name.startswith("sha256-") and len(name) == 7 + 64:
        return name.replace("-", ":", 1)
    try:
        stat = Path(path).stat()
    except OSError:
        return f"file:{Path(path).resolve()}"
    return f"file:{Path(path).resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
