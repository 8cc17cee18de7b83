"""Resumable, parallel, ranged blob downloads into the store's reserved partial files.

A blob of `total` bytes is fetched into `<blob>-partial` as ranged parts, each with a
resume record `<blob>-partial-<N>` = `{"N","Offset","Size","Completed"}`: the same layout
Ollama uses, so either program can resume the other's download. A part that fails
resumes with `Range: bytes=<offset+completed>-<end>`; only attempts that make no
progress count against the retry limit. Records are rewritten while a part runs and
whenever it stops, for whatever reason, so an interrupted pull resumes from the data on
disk. Nothing here enters the store: `verify_and_commit` checks the assembled file's
sha256 and only then renames it into place.

Speed is bounded by that sha256 (one core; see `hashing`), so the rest is arranged to
keep it fed and out of its way: with `BlobTransport` a part's body is read straight into
a few 4 MiB slabs (from a pool the parts share), each written in a thread while the
next ones fill (`O_DIRECT` where possible, see `disk.PartialFile`), then hashed from
memory by the `PrefixHasher` when it continues the hashed prefix. Parts start one
connection at a time, the next one's request overlapping the current one's last
`HAND_ON` bytes (its body waits for them, so bytes stay in order), and more connections
open only while the hasher waits for data (`ramp`). Writeback of what went through the
page cache starts during the download (`disk.Flusher`), so the fsync before the commit
has little left to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import time
import weakref
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ollamapy.registry.auth import read_capped
from ollamapy.registry.client import RegistryClient, is_retryable, status_error
from ollamapy.registry.disk import (
    ALIGN,
    Flusher,
    Landing,
    PartialFile,
    SlabPool,
    pwritev_all,
    settle,
)
from ollamapy.registry.errors import (
    BlobDigestMismatchError,
    RegistryError,
    describe_network_failure,
)
from ollamapy.registry.hashing import PrefixHasher
from ollamapy.registry.progress import Event, cancel_all, first_error, transfer_event
from ollamapy.registry.ramp import RAMP_INTERVAL, ConnectionRamp, Turn
from ollamapy.registry.transport import BodyReader, body_reader
from ollamapy.store import Layer, Store
from ollamapy.types import Digest

WRITE_BUFFER = 1024 * 1024
"""Bytes gathered per `pwritev` when a body arrives as chunks (no `BodyReader`)."""
SLAB = 4 * 1024 * 1024
"""Bytes per slab (a multiple of `disk.ALIGN`): large, because every slab costs a few
event-loop round trips and thread hand-offs, and small enough to hash in a few ms."""
SLABS_PER_PART = 4
"""For the first part: one slab filling while the others are written or wait for the
hasher; each further connection adds one more to the shared pool."""
HAND_ON = 16 * 1024 * 1024
"""Bytes left in a part when the next part may send its request (see `ramp`): enough
to cover the registry's answer (5-6 ms for Debian's docker-registry on loopback) at
1-2 GB/s. The next part's body waits for this one's end, so a large value costs only
an idle connection for a while."""
MAX_PARTS = 10_000
"""Parts per blob, at most: 5 TiB with 512 MiB parts, far beyond any model file."""
_MAX_RECORD = 4096
_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()


def blob_lock(path: Path) -> asyncio.Lock:
    """One lock per partial file, so two pulls in this process never write one file."""
    key = str(path)
    lock = _locks.get(key)
    if lock is None:
        lock = asyncio.Lock()
        _locks[key] = lock
    return lock


@dataclass
class Part:
    """A byte range of the blob and how much of it is on disk."""

    n: int
    offset: int
    size: int
    completed: int = 0
    """Bytes written to the data file (what the resume record claims)."""
    buffered: int = field(default=0, compare=False)
    """Bytes received but not yet written; counted in progress, never in the record."""

    def to_json(self) -> dict[str, int]:
        return {"N": self.n, "Offset": self.offset, "Size": self.size, "Completed": self.completed}

    @classmethod
    def from_json(cls, raw: object) -> Part | None:
        if not isinstance(raw, dict):
            return None
        values = [raw.get(key) for key in ("N", "Offset", "Size", "Completed")]
        if not all(type(v) is int and v >= 0 for v in values):
            return None
        n, offset, size, completed = (int(v) for v in values)  # type: ignore[arg-type]
        return cls(n, offset, size, min(completed, size))


@dataclass(frozen=True)
class Hashed:
    """A partial file's sha256, computed during the download, and the file's identity
    (`_identity`) at that moment: it vouches for the file only while that is unchanged."""

    digest: Digest
    identity: tuple[int, ...]


class _Interrupted(Exception):
    """A part's response ended early or with a retryable status."""


class BlobDownload:
    """Download one layer into its partial file (resuming what is already there)."""

    def __init__(self, client: RegistryClient, store: Store, layer: Layer) -> None:
        self.client = client
        self.store = store
        self.digest = layer.digest
        self.total = layer.size
        self.settings = client.settings
        self.data_path = store.partial_path(layer.digest)
        self.parts: list[Part] = []
        self.hashed: Hashed | None = None
        """Set when `run` completes: pass it to `verify_and_commit`."""
        self._hasher: PrefixHasher | None = None
        self._flusher: Flusher | None = None
        self._file: PartialFile | None = None
        self._slabs: SlabPool | None = None
        self._saved_at: dict[int, float] = {}
        self._saved: dict[int, int] = {}
        """`Completed` of each part's record on disk, to skip rewriting an unchanged one."""
        self._claimed: int | None = None
        """The partial file's descriptor, locked, once `claim` succeeded."""

    @property
    def completed(self) -> int:
        return sum(part.completed + part.buffered for part in self.parts)

    def event(self) -> Event:
        status = f"pulling {self.digest.short}"
        return transfer_event(status, str(self.digest), self.total, self.completed)

    def claim(self) -> bool:
        """Lock the partial file for this download; False while another process holds it
        (a replica on the same store downloading or committing the same blob). Claim
        before `prepare`: resume records are only read or reset by the file's holder."""
        self.store.blobs_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.data_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._claimed = fd
        return True

    def release(self) -> None:
        """Give up a claim that `run` did not take over; safe to call twice."""
        fd, self._claimed = self._claimed, None
        if fd is not None:
            os.close(fd)

    def discard_claimed(self) -> None:
        """The blob is already in the store: drop the claimed partial file and release it."""
        fd = self._claimed
        if fd is not None and _names_file(self.data_path, fd):
            discard_partial(self.store, self.digest)
        self.release()

    def prepare(self) -> None:
        """Load resume records that fit this blob, or plan fresh parts (runs in a thread)."""
        self.store.blobs_dir.mkdir(parents=True, exist_ok=True)
        parts = self._load_parts()
        if parts is None:
            remove_records(self.store, self.digest)
            parts = self._plan_parts()
        self.parts = parts
        self._saved = {part.n: part.completed for part in parts if part.completed}

    async def run(self) -> None:
        # Opened in the loop, not a thread: a cancel during an awaited open would leak
        # the descriptor and its lock. Open, flock and a sparse truncate are quick.
        fd = self._open_data_file()
        hasher = self._hasher = PrefixHasher(fd, self.total)
        flusher = self._flusher = Flusher(fd)
        file = self._file = PartialFile.open(self.data_path, fd)
        limit = SLABS_PER_PART + self.settings.max_connections - 1
        self._slabs = SlabPool(max(ALIGN, SLAB // ALIGN * ALIGN), limit)
        try:
            hasher.advance(written_prefix(self.parts, self.total))  # resumed data is hashed first
            ramp = ConnectionRamp(self.settings.initial_connections, self.settings.max_connections)
            follow = asyncio.ensure_future(ramp.follow(hasher.idle_seconds, RAMP_INTERVAL))
            try:
                await first_error(self._fetch_part(part, fd, ramp) for part in self.parts)
            finally:
                await cancel_all([follow])
                await flusher.finish()
            # Write back the rest while the hasher finishes the tail; `verify_and_commit`
            # still syncs, but finds nothing left to write.
            finish = asyncio.ensure_future(asyncio.to_thread(_sync_then_wait, fd, hasher))
            try:
                digest = await asyncio.shield(finish)
            finally:
                await settle(finish)  # never let the fd close under a running fsync
            if digest is not None:
                self.hashed = Hashed(digest, _identity(os.fstat(fd)))
        finally:
            # Synchronous on purpose: cleanup must finish even if cancelled again, and
            # a few tiny JSON files cost less than a thread hop. Joining the hasher waits
            # at most for one `HASH_STEP` read.
            self._hasher = self._flusher = self._file = self._slabs = None
            try:
                hasher.close()
                self._save_all()
            finally:
                try:
                    file.close()
                finally:
                    os.close(fd)

    # ------------------------------------------------------------------ plan

    def _plan_parts(self) -> list[Part]:
        size = self.settings.part_size(self.total)
        if -(-self.total // size) > MAX_PARTS:  # a hostile size must not exhaust memory
            raise RegistryError(f"blob {self.digest} is too large ({self.total} bytes)")
        return [
            Part(n, offset, min(size, self.total - offset))
            for n, offset in enumerate(range(0, self.total, size))
        ]

    def _load_parts(self) -> list[Part] | None:
        """Existing records, if they exactly tile [0, total) and the data file is whole."""
        try:
            if self.data_path.stat().st_size != self.total:
                return None
        except FileNotFoundError:
            return None
        parts = []
        for path in record_paths(self.store, self.digest):
            part = _read_record(path)
            if part is None:
                return None
            parts.append(part)
        parts.sort(key=lambda part: part.offset)
        position = 0
        for index, part in enumerate(parts):
            if part.n != index or part.offset != position or part.size == 0:
                return None
            position += part.size
        return parts if position == self.total and parts else None

    def _open_data_file(self) -> int:
        """Open (creating) the partial file, locked against other processes, sized to total;
        the descriptor `claim` locked, when it was called."""
        fd, self._claimed = self._claimed, None
        if fd is None:
            fd = os.open(self.data_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                message = f"another download of {self.digest} is in progress"
                raise RegistryError(message) from None
        try:
            if os.fstat(fd).st_size != self.total:
                os.ftruncate(fd, self.total)
        except OSError as exc:
            os.close(fd)
            raise RegistryError(f"cannot allocate {self.total} bytes: {exc.strerror}") from None
        return fd

    # -------------------------------------------------------------- transfer

    async def _fetch_part(self, part: Part, fd: int, ramp: ConnectionRamp) -> None:
        """Fetch a part, resuming after each failure; give up after `retries` failures in
        a row that brought no new bytes (a slow but moving download never gives up)."""
        failures = 0
        while part.completed < part.size:
            before = part.completed
            problem: Exception = _Interrupted("connection closed early")
            try:
                async with ramp.turn() as turn:
                    await self._stream_part(part, fd, turn)
            except (httpx.TransportError, _Interrupted) as exc:
                problem = exc
            if part.completed >= part.size:
                return
            failures = 0 if part.completed > before else failures + 1
            if failures > self.settings.retries:
                reason = _reason(problem, self.client.remote.blob_url(self.digest))
                raise RegistryError(f"download of {self.digest.short} failed: {reason}")
            await asyncio.sleep(self.settings.backoff(max(0, failures - 1)))

    async def _stream_part(self, part: Part, fd: int, turn: Turn) -> None:
        start = part.offset + part.completed
        end = part.offset + part.size - 1
        response = await self.client.open(
            "GET",
            self.client.remote.blob_url(self.digest),
            headers={"Range": f"bytes={start}-{end}"},
            redirects=self.settings.max_redirects,
            bulk=True,
        )
        if response.status_code not in (200, 206):
            body = await read_capped(response, 64 * 1024)
            if is_retryable(response.status_code):
                raise _Interrupted(f"registry answered {response.status_code}")
            raise status_error(response.status_code, body)
        skip = start if response.status_code == 200 else _range_skip(response, start)
        try:
            await turn.in_order()
            reader = body_reader(response)
            if reader is not None and not skip and self._file and self._slabs:
                await self._receive_slabs(reader, part, self._file, self._slabs, turn)
            else:
                await self._receive(response, part, fd, skip)
        finally:
            await response.aclose()

    async def _receive_slabs(
        self, reader: BodyReader, part: Part, file: PartialFile, free: SlabPool, turn: Turn
    ) -> None:
        """Read the body straight into slabs, each written (in a thread) while the next
        ones fill, then handed to the hasher. Never past the part's end.

        A slab takes the bytes from `offset` to the next multiple of its size, placed at
        `offset % ALIGN` in it: memory and file then agree on block boundaries, so all
        but a part's edges can be written directly (see `disk.PartialFile`)."""
        writing: deque[Landing] = deque()
        try:
            while (room := part.size - part.completed - part.buffered) > 0:
                if room <= HAND_ON:
                    turn.hand_on()
                while writing and (not free.ready() or writing[0].write.done()):
                    await self._land(part, writing.popleft(), free)
                slab = await free.get()
                offset = part.offset + part.completed + part.buffered
                skew = offset % ALIGN
                target = slab[skew : skew + min(len(slab) - skew, room)]
                try:
                    count = await reader.readinto(target, self.settings.progress_interval)
                except BaseException:
                    free.put(slab)  # the pool is shared: a failed part must not keep it
                    raise
                if count == 0:
                    free.put(slab)
                    break
                part.buffered += count
                writing.append(Landing.start(file, offset, slab, target[:count]))
        finally:
            failure = await self._drain(part, writing, free)
        if failure is not None:  # a write that failed after the last byte arrived
            raise failure

    async def _drain(
        self, part: Part, writing: deque[Landing], free: SlabPool
    ) -> BaseException | None:
        """Wait for the writes still running (even when cancelled: the fd must outlive
        them), count them, and return the first one's error."""
        for landing in writing:
            await settle(landing.write)
        failure = None
        for landing in writing:
            self._count(part, landing, free)
            if not landing.write.cancelled() and failure is None:
                failure = landing.write.exception()
        part.buffered = 0
        return failure

    async def _land(self, part: Part, landing: Landing, free: SlabPool) -> None:
        """Wait for a slab's write, then count it (a write error is raised after)."""
        try:
            await asyncio.shield(landing.write)
        finally:
            await settle(landing.write)  # never let the fd close under a running write
            self._count(part, landing, free)

    def _count(self, part: Part, landing: Landing, free: SlabPool) -> None:
        """Count a finished write if it continues the part's written bytes (after a failed
        one, later slabs are on disk but not counted: the record must have no gaps). Then
        offer the slab to the hasher, which gives it back once hashed, or take it back."""
        part.buffered -= landing.count
        write = landing.write
        written = (
            not write.cancelled()
            and write.exception() is None
            and landing.offset == part.offset + part.completed
        )
        if written:
            part.completed += landing.count
            if self._flusher is not None:
                self._flusher.landed(write.result())
        if not (written and self._offer(landing, free)):
            free.put(landing.slab)
        if written and self._hasher is not None:
            self._hasher.advance(written_prefix(self.parts, self.total))
        self._save_now_and_then(part)

    def _offer(self, landing: Landing, free: SlabPool) -> bool:
        if self._hasher is None:
            return False
        loop = asyncio.get_running_loop()

        def release() -> None:
            loop.call_soon_threadsafe(free.put, landing.slab)

        return self._hasher.offer(landing.offset, landing.data, release)

    async def _receive(self, response: httpx.Response, part: Part, fd: int, skip: int) -> None:
        """Write the body into the part's range; never past its end, even if sent more.

        Received chunks are kept as they are and written with one `pwritev` per
        `WRITE_BUFFER` bytes, so the body is never copied into a staging buffer."""
        chunks: list[bytes] = []
        try:
            async for chunk in response.aiter_raw():
                if skip:
                    dropped = min(skip, len(chunk))
                    chunk, skip = chunk[dropped:], skip - dropped
                room = part.size - part.completed - part.buffered
                if len(chunk) > room:
                    chunk = chunk[:room]
                if chunk:
                    chunks.append(chunk)
                    part.buffered += len(chunk)
                if part.buffered >= WRITE_BUFFER:
                    await self._write(part, fd, chunks)
                if part.buffered + part.completed >= part.size:
                    break
        finally:
            await self._write(part, fd, chunks)

    async def _write(self, part: Part, fd: int, chunks: list[bytes]) -> None:
        if not chunks:
            part.buffered = 0
            return
        data = list(chunks)
        chunks.clear()
        length = sum(len(chunk) for chunk in data)
        write = asyncio.ensure_future(
            asyncio.to_thread(pwritev_all, fd, data, part.offset + part.completed)
        )
        try:
            await asyncio.shield(write)
        finally:
            await settle(write)  # never let the fd close under a running write
            part.buffered = 0
            if not write.cancelled() and write.exception() is None:
                part.completed += length
                if self._flusher is not None:
                    self._flusher.landed(length)
                if self._hasher is not None:
                    self._hasher.advance(written_prefix(self.parts, self.total))
        self._save_now_and_then(part)

    def _save_now_and_then(self, part: Part) -> None:
        """Rewrite the part's record at most every `state_save_interval`, and as soon as
        the part is complete: written during the download, the final records need no
        rewrite at the end (a replaced file makes ext4 write it out at once, and deleting
        it at the commit then waits for that write, about 4 ms per record here)."""
        now = time.monotonic()
        due = now - self._saved_at.get(part.n, 0.0) >= self.settings.state_save_interval
        if due or part.completed >= part.size:
            self._saved_at[part.n] = now
            self._save(part)

    def _save(self, part: Part) -> None:
        if self._saved.get(part.n) == part.completed and part.completed:
            return
        path = self.store.partial_path(self.digest, f"-{part.n}")
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(part.to_json()))
        os.replace(tmp, path)
        self._saved[part.n] = part.completed

    def _save_all(self) -> None:
        for part in self.parts:
            with contextlib.suppress(OSError):
                self._save(part)


def record_paths(store: Store, digest: Digest) -> list[Path]:
    """The resume records `<blob>-partial-<N>` of a blob."""
    prefix = store.partial_path(digest).name + "-"
    try:
        names = os.listdir(store.blobs_dir)
    except FileNotFoundError:
        return []
    return [
        store.blobs_dir / name
        for name in names
        if name.startswith(prefix) and name[len(prefix) :].isdigit()
    ]


def recorded_bytes(store: Store, digest: Digest) -> int:
    """Bytes of a blob on disk by its resume records: another server's download, watched
    while waiting for it (records are rewritten as its parts progress)."""
    parts = (_read_record(path) for path in record_paths(store, digest))
    return sum(part.completed for part in parts if part is not None)


def remove_records(store: Store, digest: Digest) -> None:
    """Delete a blob's resume records, several at once: on ext4 (mounted with `discard`
    on the reference machine) deleting a file whose blocks were allocated waits about
    4 ms for the journal, 64 ms for 16 records one by one but under 10 ms together."""
    paths = record_paths(store, digest)
    if len(paths) <= 1:
        for path in paths:
            path.unlink(missing_ok=True)
        return
    with ThreadPoolExecutor(max_workers=min(len(paths), 16)) as pool:
        list(pool.map(lambda path: path.unlink(missing_ok=True), paths))


def discard_partial(store: Store, digest: Digest) -> None:
    """Forget a download entirely (its data failed verification)."""
    remove_records(store, digest)
    store.partial_path(digest).unlink(missing_ok=True)


def verify_and_commit(
    store: Store, digest: Digest, size: int, hashed: Hashed | None = None
) -> None:
    """Check the assembled partial file's sha256; move it into the store only if it is `digest`.

    `hashed` (from `BlobDownload.hashed`) is used when the file is still the one it was
    computed from; otherwise the whole file is hashed here. A mismatch (or wrong size)
    deletes the data and its records, so the next pull starts over rather than resuming
    corrupt bytes. Runs in a thread: hashing gigabytes takes time.
    """
    path = store.partial_path(digest)
    try:
        handle = path.open("r+b")
    except FileNotFoundError:
        if store.has_blob(digest):  # another server committed it (and removed the file)
            return
        raise RegistryError(f"the download of {digest} vanished: pull again") from None
    with handle:
        # Another server on this store may be downloading or committing the same file:
        # its holder alone may hash, rename or delete it.
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        if not _names_file(path, handle.fileno()):  # renamed into the store meanwhile
            if store.has_blob(digest):
                return
            raise RegistryError(f"the download of {digest} vanished: pull again")
        if store.has_blob(digest):  # a concurrent pull of the same blob committed it first
            discard_partial(store, digest)
            return
        stat = os.fstat(handle.fileno())
        actual_size = stat.st_size
        if hashed is not None and hashed.identity == _identity(stat):
            actual = hashed.digest
        else:
            actual = Digest(hashlib.file_digest(handle, "sha256").hexdigest())
        if actual != digest or actual_size != size:
            discard_partial(store, digest)  # while still holding the lock
            raise BlobDigestMismatchError(
                f"digest mismatch, file must be downloaded again: want {digest}, got {actual}"
            )
        os.fsync(handle.fileno())
        os.fchmod(handle.fileno(), 0o644)
        target = store.blob_path(digest)
        if target.is_file():
            path.unlink(missing_ok=True)
        else:
            os.replace(path, target)
        remove_records(store, digest)


def _names_file(path: Path, fd: int) -> bool:
    """Whether `path` still names the open file `fd` (not renamed, deleted or replaced)."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def _sync_then_wait(fd: int, hasher: PrefixHasher) -> Digest | None:
    os.fsync(fd)
    return hasher.result()


def written_prefix(parts: list[Part], total: int) -> int:
    """End of the longest run of written bytes from offset 0 (`parts` tile it in order)."""
    for part in parts:
        if part.completed < part.size:
            return part.offset + part.completed
    return total


def _identity(stat: os.stat_result) -> tuple[int, ...]:
    """What changes when a file is replaced or written: device, inode, size, times."""
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def _read_record(path: Path) -> Part | None:
    try:
        with path.open("rb") as handle:
            return Part.from_json(json.loads(handle.read(_MAX_RECORD)))
    except (OSError, ValueError, RecursionError):
        return None


def _range_skip(response: httpx.Response, start: int) -> int:
    """A 206 must start where we asked; anything else is treated as a broken answer."""
    content_range = response.headers.get("content-range", "")
    unit, _, spec = content_range.partition(" ")
    first = spec.split("-", 1)[0]
    if unit.strip().lower() != "bytes" or not first.isdigit() or int(first) != start:
        raise _Interrupted(f"unexpected Content-Range {content_range[:80]!r}")
    return 0


def _reason(exc: Exception, url: httpx.URL) -> str:
    """Why a part failed: a network failure in the user's terms, else the interruption."""
    if isinstance(exc, httpx.TransportError):
        return describe_network_failure(exc, url)
    return str(exc) or type(exc).__name__
