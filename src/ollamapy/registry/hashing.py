"""The sha256 of a blob that is written out of order, computed in order while it lands.

SHA-256 is one sequential stream: it cannot be split across cores, so a pull can never
be faster than one core hashing. Everything here is about keeping that core busy and
giving it nothing else to do. Bytes reach the hash two ways, both only after they are
on disk (so the digest always vouches for what the file holds):

- `offer`: a buffer that was just written and continues the hashed prefix is hashed
  from memory (the common case: one connection delivering in order);
- `advance`: the written prefix grew; bytes that were not offered (parts that landed
  out of order, data resumed from an earlier run) are read back from the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable

from ollamapy.types import Digest

HASH_STEP = 4 * 1024 * 1024
"""Bytes read back per `preadv`; hashlib releases the GIL while hashing them."""

Release = Callable[[], None]
_Offer = tuple[int, memoryview, Release]


class PrefixHasher:
    """sha256 of `fd`'s `total` bytes, hashed by a worker thread as its prefix fills in.

    `offer(offset, data, release)` and `advance(end)` feed it (see the module notes);
    offered buffers are hashed first, so in-order data is never read back. `result()`
    waits for all `total` bytes; `close()` stops and joins the thread (releasing any
    buffer still offered) and must be called before `fd` is closed. `idle_seconds()`
    says how long the worker has waited for data: the download's sign that the
    network, not the hash, is the bottleneck.
    """

    def __init__(self, fd: int, total: int) -> None:
        self._fd = fd
        self._total = total
        self._sha = hashlib.sha256()
        self._ready = 0
        self._hashed = 0
        self._offers: deque[_Offer] = deque()
        self._offered_to = 0
        """Where the next offered buffer must start to be taken."""
        self._idle = 0.0
        self._waiting_since: float | None = None
        self._stopped = False
        self._failed = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._work, name="sha256-prefix", daemon=True)
        self._thread.start()

    def advance(self, end: int) -> None:
        """Bytes `[0, end)` are on disk."""
        with self._changed:
            if end > self._ready:
                self._ready = min(end, self._total)
                self._changed.notify_all()

    def offer(self, offset: int, data: memoryview, release: Release) -> bool:
        """Hash `data` (already written at `offset`) from memory if it continues the prefix.

        False means it was not taken: the caller keeps its buffer, and the bytes will be
        read back from the file once the prefix reaches them. True means the worker owns
        `data` until it calls `release()` (from its thread), after hashing it or when it
        stops; the caller must not change the buffer before then.
        """
        with self._changed:
            expected = max(self._offered_to, self._hashed)
            if self._stopped or self._failed or offset != expected or expected >= self._total:
                return False
            data = data[: self._total - offset]  # never past the blob's end
            self._offers.append((offset, data, release))
            self._offered_to = offset + len(data)
            self._changed.notify_all()
            return True

    def result(self) -> Digest | None:
        """The digest once every byte is hashed (blocks); None if stopped or reading failed."""
        with self._changed:
            self._changed.wait_for(
                lambda: self._hashed >= self._total or self._stopped or self._failed
            )
            if self._hashed < self._total:
                return None
            return Digest(self._sha.hexdigest())

    def idle_seconds(self) -> float:
        """Time the worker has spent waiting for bytes to hash, so far."""
        with self._changed:
            waiting = 0.0 if self._waiting_since is None else time.monotonic() - self._waiting_since
            return self._idle + waiting

    def close(self) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify_all()
        self._thread.join()

    # ---------------------------------------------------------------- worker

    def _has_work(self) -> bool:
        """Something to hash, or a reason to end (stopped, or every byte hashed)."""
        done = self._stopped or self._hashed >= self._total
        return done or bool(self._offers) or self._ready > self._hashed

    def _work(self) -> None:
        step = memoryview(b"")
        try:
            while True:
                with self._changed:
                    if not self._has_work():
                        self._waiting_since = time.monotonic()
                        self._changed.wait_for(self._has_work)
                        self._idle += time.monotonic() - self._waiting_since
                        self._waiting_since = None
                    if self._stopped or self._hashed >= self._total:
                        return  # done: `close` then finds the thread gone, not asleep
                    offer = self._offers.popleft() if self._offers else None
                    position, ready = self._hashed, self._ready
                if offer is not None:
                    self._hash_offer(position, *offer)
                    continue
                if not step:  # allocated only when something has to be read back
                    step = memoryview(bytearray(max(1, min(HASH_STEP, self._total))))
                self._hash_from_file(step, position, ready)
        except OSError:
            with self._changed:  # verify_and_commit will hash the whole file instead
                self._failed = True
                self._changed.notify_all()
        finally:
            self._release_offers()

    def _hash_offer(self, position: int, offset: int, data: memoryview, release: Release) -> None:
        """Hash what `data` adds beyond `position` (the file may have been read past it)."""
        try:
            skip = position - offset
            if 0 <= skip < len(data):
                self._sha.update(data[skip:])
                self._set_hashed(offset + len(data))
        finally:
            _call(release)

    def _hash_from_file(self, step: memoryview, position: int, ready: int) -> None:
        """Read back and hash one step of written bytes (then offers get their turn)."""
        read = os.preadv(self._fd, [step[: ready - position]], position)
        if read <= 0:
            raise OSError("partial file is shorter than its written parts")
        self._sha.update(step[:read])
        self._set_hashed(position + read)

    def _set_hashed(self, end: int) -> None:
        with self._changed:
            self._hashed = end
            self._changed.notify_all()

    def _release_offers(self) -> None:
        """Give every offered buffer back: the downloader may be waiting for one."""
        while True:
            with self._changed:
                if not self._offers:
                    return
                _offset, _data, release = self._offers.popleft()
            _call(release)


def _call(release: Release) -> None:
    with contextlib.suppress(RuntimeError):  # the owner's event loop has already closed
        release()
