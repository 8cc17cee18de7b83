"""`PrefixHasher`: the sha256 computed while parts land, and how `verify_and_commit` uses it."""

from __future__ import annotations

import hashlib
import os
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ollamapy.registry import download, hashing
from ollamapy.registry.download import Hashed, Part, verify_and_commit, written_prefix
from ollamapy.registry.errors import BlobDigestMismatchError
from ollamapy.registry.hashing import PrefixHasher
from ollamapy.store import Store
from ollamapy.types import Digest

DATA = random.Random(7).randbytes(100_003)
PART = 10_000


@pytest.fixture(autouse=True)
def small_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hashing, "HASH_STEP", 4099)  # many reads, none aligned to parts


@pytest.fixture
def fd(tmp_path: Path) -> Iterator[int]:
    descriptor = os.open(tmp_path / "data", os.O_RDWR | os.O_CREAT)
    os.ftruncate(descriptor, len(DATA))
    yield descriptor
    os.close(descriptor)


def _parts() -> list[Part]:
    return [
        Part(n, offset, min(PART, len(DATA) - offset))
        for n, offset in enumerate(range(0, len(DATA), PART))
    ]


def _write(fd: int, part: Part, length: int) -> None:
    start = part.offset + part.completed
    os.pwrite(fd, DATA[start : start + length], start)
    part.completed += length


def _hasher_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "sha256-prefix"]


def test_written_prefix_stops_at_first_unfinished_part() -> None:
    parts = _parts()
    assert written_prefix(parts, len(DATA)) == 0
    parts[1].completed = PART
    parts[0].completed = 500
    assert written_prefix(parts, len(DATA)) == 500
    parts[0].completed = PART
    assert written_prefix(parts, len(DATA)) == 2 * PART
    for part in parts:
        part.completed = part.size
    assert written_prefix(parts, len(DATA)) == len(DATA)


def test_out_of_order_parts_hash_to_the_blob_digest(fd: int) -> None:
    parts = _parts()
    rng = random.Random(3)
    hasher = PrefixHasher(fd, len(DATA))
    try:
        unfinished = list(parts)
        while unfinished:  # chunks land in a random order across parts, in order within one
            part = rng.choice(unfinished)
            _write(fd, part, min(3_337, part.size - part.completed))
            if part.completed == part.size:
                unfinished.remove(part)
            hasher.advance(written_prefix(parts, len(DATA)))
        assert hasher.result() == Digest.of_bytes(DATA)
    finally:
        hasher.close()
    assert not _hasher_threads()


def test_resume_hashes_data_already_on_disk(fd: int) -> None:
    parts = _parts()
    for part in parts[:4]:  # an earlier run wrote 4 whole parts and half of one more
        _write(fd, part, part.size)
    _write(fd, parts[6], PART // 2)
    hasher = PrefixHasher(fd, len(DATA))
    try:
        hasher.advance(written_prefix(parts, len(DATA)))
        for part in reversed(parts):
            _write(fd, part, part.size - part.completed)
            hasher.advance(written_prefix(parts, len(DATA)))
        assert hasher.result() == Digest.of_bytes(DATA)
    finally:
        hasher.close()


def test_wrong_bytes_give_a_different_digest(fd: int) -> None:
    os.pwrite(fd, DATA, 0)
    os.pwrite(fd, b"X", 54_321)  # one byte differs
    hasher = PrefixHasher(fd, len(DATA))
    try:
        hasher.advance(len(DATA))
        actual = hasher.result()
    finally:
        hasher.close()
    assert actual is not None and actual != Digest.of_bytes(DATA)


def test_close_stops_a_waiting_hasher(fd: int) -> None:
    hasher = PrefixHasher(fd, len(DATA))
    hasher.advance(PART)  # the rest never arrives: a cancelled or failed download
    hasher.close()
    assert hasher.result() is None
    assert not _hasher_threads()


def test_read_failure_gives_no_digest(fd: int) -> None:
    os.ftruncate(fd, PART)  # shorter than the parts claim
    hasher = PrefixHasher(fd, len(DATA))
    try:
        hasher.advance(len(DATA))
        assert hasher.result() is None
    finally:
        hasher.close()


# ------------------------------------------------------------ verify_and_commit


def _partial(store: Store, data: bytes) -> tuple[Digest, Path]:
    digest = Digest.of_bytes(DATA)
    store.blobs_dir.mkdir(parents=True, exist_ok=True)
    path = store.partial_path(digest)
    path.write_bytes(data)
    store.partial_path(digest, "-0").write_text("{}")
    return digest, path


def _hashed_now(path: Path, digest: Digest) -> Hashed:
    return Hashed(digest, download._identity(path.stat()))


def test_commit_trusts_the_download_hash_of_an_unchanged_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(tmp_path / "store")
    digest, path = _partial(store, DATA)
    hashed = _hashed_now(path, digest)

    def no_second_pass(*_args: object) -> object:
        raise AssertionError("the file was hashed again")

    monkeypatch.setattr(hashlib, "file_digest", no_second_pass)
    verify_and_commit(store, digest, len(DATA), hashed)
    assert store.blob_path(digest).read_bytes() == DATA
    assert not list(store.blobs_dir.glob("*partial*"))


def test_commit_rejects_a_download_hash_mismatch(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    digest, path = _partial(store, DATA)
    hashed = _hashed_now(path, Digest.of_bytes(b"something else"))
    with pytest.raises(BlobDigestMismatchError, match="digest mismatch"):
        verify_and_commit(store, digest, len(DATA), hashed)
    assert not store.has_blob(digest)
    assert not list(store.blobs_dir.iterdir())  # bad data and its records are gone


def test_commit_rehashes_a_file_changed_after_hashing(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    digest, path = _partial(store, DATA)
    hashed = _hashed_now(path, digest)  # right when computed...
    with path.open("r+b") as handle:  # ...but the file changed since
        handle.seek(99)
        handle.write(b"X")
    os.utime(path, ns=(0, 0))  # timestamps are coarse: make sure this write shows
    with pytest.raises(BlobDigestMismatchError, match="digest mismatch"):
        verify_and_commit(store, digest, len(DATA), hashed)
    assert not store.has_blob(digest)
    assert not list(store.blobs_dir.iterdir())


# ------------------------------------------------------------------ offers


class _Reads:
    """Counts the hasher's read-backs from the file."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = os.preadv

        def counted(fd: int, buffers: list[memoryview], offset: int) -> int:
            self.count += 1
            return real(fd, buffers, offset)

        monkeypatch.setattr(hashing.os, "preadv", counted)


def test_in_order_offers_are_hashed_from_memory(fd: int, monkeypatch: pytest.MonkeyPatch) -> None:
    reads = _Reads(monkeypatch)
    released: list[int] = []
    hasher = PrefixHasher(fd, len(DATA))
    try:
        for offset in range(0, len(DATA), 7_001):
            data = memoryview(DATA[offset : offset + 7_001])
            os.pwrite(fd, data, offset)  # written first, as the download does
            assert hasher.offer(offset, data, lambda o=offset: released.append(o))
            hasher.advance(offset + len(data))
        assert hasher.result() == Digest.of_bytes(DATA)
    finally:
        hasher.close()
    assert reads.count == 0
    assert released == list(range(0, len(DATA), 7_001))  # every buffer given back, in order


def test_offers_past_the_prefix_are_declined_and_read_back(fd: int) -> None:
    hasher = PrefixHasher(fd, len(DATA))
    try:
        later = memoryview(DATA[PART:])
        os.pwrite(fd, later, PART)
        assert not hasher.offer(PART, later, lambda: pytest.fail("declined: not released"))
        os.pwrite(fd, DATA[:PART], 0)
        hasher.advance(len(DATA))
        assert hasher.result() == Digest.of_bytes(DATA)
        assert not hasher.offer(len(DATA), memoryview(b"x"), lambda: None)  # nothing after the end
    finally:
        hasher.close()


def test_offers_and_read_backs_mix_to_the_blob_digest(fd: int) -> None:
    parts = _parts()
    rng = random.Random(11)
    hasher = PrefixHasher(fd, len(DATA))
    offered = 0
    try:
        unfinished = list(parts)
        while unfinished:
            part = rng.choice(unfinished)
            start = part.offset + part.completed
            length = min(3_001, part.size - part.completed)
            _write(fd, part, length)
            offered += hasher.offer(start, memoryview(DATA[start : start + length]), lambda: None)
            if part.completed == part.size:
                unfinished.remove(part)
            hasher.advance(written_prefix(parts, len(DATA)))
        assert hasher.result() == Digest.of_bytes(DATA)
    finally:
        hasher.close()
    assert offered > 0


def test_close_gives_back_every_offered_buffer(fd: int) -> None:
    os.pwrite(fd, DATA, 0)
    first_taken, go_on = threading.Event(), threading.Event()
    released: list[str] = []

    def slow_release() -> None:  # holds the worker inside the first release
        first_taken.set()
        go_on.wait(5)
        released.append("a")

    hasher = PrefixHasher(fd, len(DATA))
    assert hasher.offer(0, memoryview(DATA[:100]), slow_release)
    assert first_taken.wait(5)
    assert hasher.offer(100, memoryview(DATA[100:200]), lambda: released.append("b"))
    assert hasher.offer(200, memoryview(DATA[200:300]), lambda: released.append("c"))
    closing = threading.Thread(target=hasher.close)
    closing.start()
    go_on.set()
    closing.join(5)
    assert sorted(released) == ["a", "b", "c"]
    assert not hasher.offer(300, memoryview(DATA[300:400]), lambda: None)


def test_idle_time_counts_only_waiting(fd: int) -> None:
    hasher = PrefixHasher(fd, len(DATA))
    try:
        threading.Event().wait(0.1)
        assert hasher.idle_seconds() >= 0.05
    finally:
        hasher.close()


def test_the_worker_ends_once_every_byte_is_hashed(fd: int) -> None:
    """So that `close` at the end of a pull joins a finished thread, not a sleeping one."""
    os.pwrite(fd, DATA, 0)
    hasher = PrefixHasher(fd, len(DATA))
    try:
        hasher.advance(len(DATA))
        assert hasher.result() == Digest.of_bytes(DATA)
        hasher._thread.join(timeout=5)
        assert not hasher._thread.is_alive()
        assert not hasher.offer(len(DATA), memoryview(b"x"), lambda: None)
    finally:
        hasher.close()
