"""`pwritev_all`: many buffers (more than one `pwritev` takes) and short writes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from ollamapy.registry import disk


def test_many_chunks_and_short_writes_land_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.pwritev
    calls: list[int] = []

    def short(fd: int, buffers: Sequence[memoryview], offset: int) -> int:
        calls.append(len(buffers))
        prefix = b"".join(bytes(b) for b in buffers[:3])[:5]  # a short write: a prefix
        return real(fd, [prefix], offset)

    monkeypatch.setattr(os, "pwritev", short)
    chunks = [bytes([i % 251]) * (i % 7 + 1) for i in range(1500)] + [b""]
    path = tmp_path / "data"
    path.write_bytes(b"x" * 10)
    fd = os.open(path, os.O_RDWR)
    try:
        disk.pwritev_all(fd, chunks, 10)
    finally:
        os.close(fd)

    assert path.read_bytes() == b"x" * 10 + b"".join(chunks)
    assert max(calls) <= disk.IOV_MAX
