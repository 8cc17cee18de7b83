"""`disk`: direct writes of the aligned middle (`PartialFile`) and the shared slab pool."""

from __future__ import annotations

import errno
import mmap
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from ollamapy.registry.disk import ALIGN, PartialFile, SlabPool

DATA = random.Random(5).randbytes(5 * ALIGN + 1234)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    target = tmp_path / "data"
    target.write_bytes(b"\0" * (len(DATA) + 3 * ALIGN))
    return target


@pytest.fixture
def partial(path: Path) -> Iterator[PartialFile]:
    """A partial file whose "direct" descriptor is a plain one: what is under test is how
    a write is split, counted and falls back, not whether this filesystem honours
    O_DIRECT (`test_o_direct_is_used_where_the_filesystem_takes_it` covers that)."""
    fd = os.open(path, os.O_RDWR)
    direct = os.open(path, os.O_WRONLY)
    file = PartialFile(fd, direct)
    yield file
    fell_back = not file.direct  # then the file no longer owns `direct`
    file.close()
    if fell_back:
        os.close(direct)
    os.close(fd)


def _aligned_copy(data: bytes, position: int) -> memoryview:
    """`data` in page-aligned memory at `position % ALIGN`, as the downloader's slabs."""
    slab = memoryview(mmap.mmap(-1, len(data) + 2 * ALIGN))
    skew = position % ALIGN
    slab[skew : skew + len(data)] = data
    return slab[skew : skew + len(data)]


@pytest.mark.parametrize("position", [0, 100, ALIGN - 1, 2 * ALIGN])
def test_only_the_unaligned_edges_go_through_the_page_cache(
    path: Path, partial: PartialFile, position: int
) -> None:
    data = _aligned_copy(DATA, position)
    buffered = partial.write(data, position)
    head = -position % ALIGN
    middle = (len(DATA) - head) // ALIGN * ALIGN
    assert buffered == len(DATA) - middle
    assert path.read_bytes()[position : position + len(DATA)] == DATA


def test_a_refused_direct_write_falls_back_to_the_page_cache(
    path: Path, partial: PartialFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.pwrite

    def refuse_direct(fd: int, data: memoryview, offset: int) -> int:
        if fd != partial.fd:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", refuse_direct)
    assert partial.write(_aligned_copy(DATA, 0), 0) == len(DATA)
    assert not partial.direct  # later writes do not try again
    assert path.read_bytes()[: len(DATA)] == DATA


def test_other_direct_write_errors_are_raised(
    partial: PartialFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int, data: memoryview, offset: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full)
    with pytest.raises(OSError, match="No space left"):
        partial.write(_aligned_copy(DATA, 0), 0)


def test_o_direct_is_used_where_the_filesystem_takes_it(path: Path) -> None:
    """The real descriptor: opened with O_DIRECT exactly when this filesystem accepts the
    flag (tmpfs before Linux 6.6 and some FUSE filesystems refuse it), and the bytes land
    either way."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_DIRECT))
        accepted = True
    except OSError:
        accepted = False
    fd = os.open(path, os.O_RDWR)
    try:
        file = PartialFile.open(path, fd)
        assert file.direct is accepted
        file.write(_aligned_copy(DATA, ALIGN), ALIGN)
        file.close()
    finally:
        os.close(fd)
    assert path.read_bytes()[ALIGN : ALIGN + len(DATA)] == DATA


def test_without_o_direct_every_byte_is_buffered(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "O_DIRECT", 0)
    fd = os.open(path, os.O_RDWR)
    try:
        file = PartialFile.open(path, fd)
        assert not file.direct
        assert file.write(memoryview(DATA), 7) == len(DATA)
        file.close()
    finally:
        os.close(fd)
    assert path.read_bytes()[7 : 7 + len(DATA)] == DATA


async def test_the_slab_pool_makes_slabs_on_demand_and_reuses_them() -> None:
    pool = SlabPool(2 * ALIGN, 2)
    first, second = await pool.get(), await pool.get()
    assert len(first) == len(second) == 2 * ALIGN
    assert not pool.ready()  # at its limit, nothing free
    pool.put(first)
    assert pool.ready()
    again = await pool.get()
    assert again.obj is first.obj  # reused, not made anew
