"""Getting downloaded bytes onto disk: writes in a thread, and writeback started early.

Writes run in threads (`asyncio.to_thread`) so the event loop keeps receiving, and a
thread's write cannot be stopped once started: `settle` waits for it even through a
cancel, because the file descriptor must outlive every write and sync on it.

Whole blocks are written with `O_DIRECT` where the filesystem allows it (`PartialFile`):
a buffered write copies every byte into the page cache (on the 2-core reference machine
about as much CPU as the sha256 itself) and leaves it for writeback; a direct write
hands the slab to the disk as it is. Slabs are page-aligned (`SlabPool`) and filled so
that their memory and file offsets agree modulo `ALIGN`, as direct I/O requires.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import mmap
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FLUSH_STEP = 32 * 1024 * 1024
"""Bytes landed between background `fdatasync`s (see `Flusher`)."""
IOV_MAX = 512
"""Buffers per `pwritev` call, below every platform's IOV_MAX (1024 on Linux)."""
ALIGN = 4096
"""Granularity of direct writes: a multiple of every common logical sector size and
the usual filesystem block (see `PartialFile.write` for why blocks matter)."""


class Flusher:
    """Starts writing landed bytes to disk every `FLUSH_STEP`, with an `fdatasync` in a
    thread, so the disk works while the download goes on and the fsync before the commit
    finds little left to do (on the reference machine it was 0.1 s per 256 MiB, a third
    of a whole pull). The kernel reports a failed writeback only once per file, so an
    error is kept and raised by `finish`, failing the download."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._landed = 0
        self._running: asyncio.Future[None] | None = None
        self._error: OSError | None = None

    def landed(self, count: int) -> None:
        self._landed += count
        if self._landed < FLUSH_STEP or (self._running is not None and not self._running.done()):
            return
        self._keep_error()
        self._landed = 0
        self._running = asyncio.ensure_future(asyncio.to_thread(os.fdatasync, self._fd))

    async def finish(self) -> None:
        """Wait for a running flush (the fd must outlive it); raise what any flush met."""
        if self._running is not None:
            await settle(self._running)
            self._keep_error()
        if self._error is not None:
            raise self._error

    def _keep_error(self) -> None:
        if self._running is not None and not self._running.cancelled():
            error = self._running.exception()
            if isinstance(error, OSError) and self._error is None:
                self._error = error


class PartialFile:
    """A partial file's buffered descriptor `fd` and, where the filesystem takes it, a
    second one opened with `O_DIRECT` for the block-aligned middle of each write.

    A block is only ever written one way: whole by one direct write, or by buffered
    writes alone (the unaligned edges). A block shared by both could be read into the
    page cache for a buffered edge while a direct write of its other half is under way,
    and written back over it. Readahead is turned off on `fd` for the same reason: the
    hasher reads back only bytes already written, and must not cache blocks beyond them.
    If a direct write is refused (`EINVAL`: a filesystem or device with other rules),
    that write and all later ones are buffered.
    """

    def __init__(self, fd: int, direct: int | None) -> None:
        self.fd = fd
        self._direct = direct
        if direct is not None:
            with contextlib.suppress(OSError):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)

    @classmethod
    def open(cls, path: Path, fd: int) -> PartialFile:
        """Add a direct descriptor to `fd` (the file at `path`) when the system has one."""
        flag = getattr(os, "O_DIRECT", 0)
        if not flag:
            return cls(fd, None)
        try:
            direct = os.open(path, os.O_WRONLY | flag | os.O_CLOEXEC)
        except OSError:  # tmpfs before Linux 6.6, some FUSE and network filesystems
            return cls(fd, None)
        return cls(fd, direct)

    @property
    def direct(self) -> bool:
        return self._direct is not None

    def write(self, data: memoryview, position: int) -> int:
        """Write `data` at `position` (runs in a thread); returns how many of its bytes
        went through the page cache (and so still need writeback)."""
        direct = self._direct
        head = min(len(data), -position % ALIGN)
        middle = (len(data) - head) // ALIGN * ALIGN
        if direct is None or not middle:
            pwrite_all(self.fd, data, position)
            return len(data)
        if head:
            pwrite_all(self.fd, data[:head], position)
        try:
            pwrite_all(direct, data[head : head + middle], position + head)
            buffered = len(data) - middle
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            self._direct = None  # not closed here: another write may be using it
            pwrite_all(self.fd, data[head : head + middle], position + head)
            buffered = len(data)
        if head + middle < len(data):
            pwrite_all(self.fd, data[head + middle :], position + head + middle)
        return buffered

    def close(self) -> None:
        """Close the direct descriptor (the caller owns `fd`); after every write settled."""
        direct, self._direct = self._direct, None
        if direct is not None:
            os.close(direct)


class SlabPool:
    """Page-aligned buffers of `size` bytes (a multiple of `ALIGN`), made on demand up
    to `limit` and reused by every part of a download: fresh memory costs a page fault
    and a zeroed page per 4 KiB, as much again as receiving into it."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self._limit = max(1, limit)
        self._made = 0
        self._free: asyncio.Queue[memoryview] = asyncio.Queue()

    def ready(self) -> bool:
        """Whether `get` would return at once."""
        return not self._free.empty() or self._made < self._limit

    async def get(self) -> memoryview:
        if self._free.empty() and self._made < self._limit:
            self._made += 1
            return memoryview(mmap.mmap(-1, self.size))
        return await self._free.get()

    def put(self, slab: memoryview) -> None:
        self._free.put_nowait(slab)


@dataclass(frozen=True)
class Landing:
    """A slab on its way to the file: `data` (a view of `slab`), written at `offset`.
    `write` gives the bytes that went through the page cache."""

    slab: memoryview
    data: memoryview
    offset: int
    write: asyncio.Future[int]

    @property
    def count(self) -> int:
        return len(self.data)

    @classmethod
    def start(cls, file: PartialFile, offset: int, slab: memoryview, data: memoryview) -> Landing:
        write = asyncio.ensure_future(asyncio.to_thread(file.write, data, offset))
        return cls(slab, data, offset, write)


async def settle(future: asyncio.Future[Any]) -> None:
    """Wait for a thread's work to finish even while being cancelled (it cannot stop)."""
    while not future.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait({future})


def pwrite_all(fd: int, data: memoryview, position: int) -> None:
    """Write `data` at `position`, resuming after short writes."""
    while data:
        written = os.pwrite(fd, data, position)
        if written <= 0:
            raise OSError("the partial file took no bytes")
        data, position = data[written:], position + written


def pwritev_all(fd: int, chunks: list[bytes], position: int) -> None:
    """Write `chunks` back to back at `position`, resuming after short writes."""
    views = [memoryview(chunk) for chunk in chunks if chunk]
    first = 0
    while first < len(views):
        written = os.pwritev(fd, views[first : first + IOV_MAX], position)
        position += written
        while written and first < len(views):
            size = len(views[first])
            if written >= size:
                written -= size
                first += 1
            else:
                views[first] = views[first][written:]
                written = 0
