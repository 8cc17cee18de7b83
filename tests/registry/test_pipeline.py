"""The download pipeline: slabs, the connection ramp, early writeback, failing writes."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from ollamapy.registry import disk, download, pull_model, push_model
from ollamapy.registry.download import BlobDownload, remove_records
from ollamapy.registry.ramp import RAMP_IDLE, ConnectionRamp
from ollamapy.store import Store
from ollamapy.types import Digest, ModelName
from tests.registry.conftest import FAST, collect, make_model, options
from tests.registry.servers import Registry

BIG_PARTS = replace(FAST, min_part_size=128 * 1024, max_part_size=128 * 1024)
"""300 KB in 3 parts of 128 KiB, each several 16 KiB slabs (see `small_slabs`)."""


@pytest.fixture
def small_slabs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(download, "SLAB", 16 * 1024)


@pytest.fixture
def buffered_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a filesystem without `O_DIRECT`: every byte goes through the page cache."""
    monkeypatch.setattr(os, "O_DIRECT", 0)


async def _pushed(registry: Registry, store: Store, repo: str) -> ModelName:
    name, _ = make_model(store, f"{registry.host}/me/{repo}:v1")
    await collect(push_model(store, str(name), options()))
    return name


# ------------------------------------------------------------------ ramp


@pytest.mark.parametrize(
    ("idle", "expected"),
    [(0.0, 1), (RAMP_IDLE, 1), (0.95, 2)],
    ids=["busy-hasher", "at-threshold", "starved-hasher"],
)
def test_ramp_grows_only_while_the_hasher_starves(idle: float, expected: int) -> None:
    ramp = ConnectionRamp(1, 8)
    ramp.grow(idle)
    assert ramp.allowed == expected


def test_ramp_doubles_up_to_its_maximum() -> None:
    ramp = ConnectionRamp(1, 5)
    for _ in range(5):
        ramp.grow(1.0)
    assert ramp.allowed == 5
    assert ConnectionRamp(9, 4).allowed == 4


async def test_handing_on_starts_the_next_part_within_the_connection_bound() -> None:
    ramp = ConnectionRamp(1, 2)
    started: list[str] = []
    finish = {name: asyncio.Event() for name in "abc"}

    async def part(name: str, hand_on: bool) -> None:
        async with ramp.turn() as turn:
            started.append(name)
            if hand_on:
                turn.hand_on()
            await finish[name].wait()

    tasks = [asyncio.ensure_future(part(name, True)) for name in "abc"]
    await asyncio.sleep(0.05)
    assert started == ["a", "b"]  # b overlapped a's tail; c waits: two connections at most
    finish["a"].set()
    await asyncio.sleep(0.05)
    assert started == ["a", "b", "c"]
    finish["b"].set()
    finish["c"].set()
    await asyncio.gather(*tasks)


async def test_a_handed_on_part_reads_only_after_the_part_before_ends() -> None:
    ramp = ConnectionRamp(1, 2)
    order: list[str] = []
    a_ends = asyncio.Event()

    async def first() -> None:
        async with ramp.turn() as turn:
            await turn.in_order()
            turn.hand_on()
            await a_ends.wait()
            order.append("a ends")

    async def second() -> None:
        async with ramp.turn() as turn:
            order.append("b asks")
            await turn.in_order()
            order.append("b reads")

    tasks = [asyncio.ensure_future(first()), asyncio.ensure_future(second())]
    await asyncio.sleep(0.05)
    assert order == ["b asks"]  # its request overlapped a's tail, its body waits
    a_ends.set()
    await asyncio.gather(*tasks)
    assert order == ["b asks", "a ends", "b reads"]


async def test_once_the_ramp_has_grown_parts_read_side_by_side() -> None:
    ramp = ConnectionRamp(1, 4)
    handed = asyncio.Event()
    a_ends = asyncio.Event()

    async def first() -> None:
        async with ramp.turn() as turn:
            turn.hand_on()
            handed.set()
            await a_ends.wait()

    task = asyncio.ensure_future(first())
    await handed.wait()
    ramp.grow(1.0)
    async with ramp.turn() as turn:
        await asyncio.wait_for(turn.in_order(), 1.0)  # does not wait for the first part
    a_ends.set()
    await task


# ---------------------------------------------------------------- flusher


async def test_flusher_syncs_every_step_and_keeps_the_first_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def failing_once(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 1:
            raise OSError(5, "Input/output error")

    monkeypatch.setattr(disk, "FLUSH_STEP", 100)
    monkeypatch.setattr(os, "fdatasync", failing_once)
    flusher = disk.Flusher(7)
    flusher.landed(99)
    await asyncio.sleep(0)
    assert calls == []
    flusher.landed(1)
    await asyncio.sleep(0.05)
    flusher.landed(100)  # a later flush succeeds, but the kernel reported the error once
    with pytest.raises(OSError, match="Input/output error"):
        await flusher.finish()
    assert calls == [7, 7]


async def test_a_failed_writeback_fails_the_pull(
    registry: Registry,
    store: Store,
    other_store: Store,
    monkeypatch: pytest.MonkeyPatch,
    small_slabs: None,
    buffered_writes: None,
) -> None:
    name = await _pushed(registry, store, "flush-error")
    monkeypatch.setattr(disk, "FLUSH_STEP", 32 * 1024)

    def broken(_fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", broken)
    with pytest.raises(OSError, match="Input/output error"):
        await collect(pull_model(other_store, str(name), options(settings=BIG_PARTS)))
    assert other_store.list_models() == []


# -------------------------------------------------------------- the slabs


async def test_blob_bodies_take_the_slab_path(
    registry: Registry,
    store: Store,
    other_store: Store,
    monkeypatch: pytest.MonkeyPatch,
    small_slabs: None,
) -> None:
    name = await _pushed(registry, store, "slabs")

    async def no_chunks(*_args: object) -> None:
        raise AssertionError("the chunked path was used")

    monkeypatch.setattr(BlobDownload, "_receive", no_chunks)
    await collect(pull_model(other_store, str(name), options(settings=BIG_PARTS)))
    assert other_store.read_manifest_bytes(name) == store.read_manifest_bytes(name)


async def test_a_failed_write_keeps_only_the_bytes_before_it(
    registry: Registry,
    store: Store,
    other_store: Store,
    monkeypatch: pytest.MonkeyPatch,
    small_slabs: None,
) -> None:
    name = await _pushed(registry, store, "write-fails")
    real = disk.pwrite_all
    writes: list[int] = []

    def fifth_fails(fd: int, data: memoryview, position: int) -> None:
        writes.append(position)
        if len(writes) == 5:
            raise OSError(28, "No space left on device")
        real(fd, data, position)

    monkeypatch.setattr(disk, "pwrite_all", fifth_fails)
    with pytest.raises(OSError, match="No space left"):
        await collect(pull_model(other_store, str(name), options(settings=BIG_PARTS)))

    records = sorted(other_store.blobs_dir.glob("*-partial-*"))
    completed = [json.loads(p.read_text()) for p in records]
    failed_at = writes[4]
    hit = [r for r in completed if r["Offset"] <= failed_at < r["Offset"] + r["Size"]]
    assert hit and hit[0]["Offset"] + hit[0]["Completed"] <= failed_at  # not past the failure
    model = store.read_manifest(name).layers[0]
    data = other_store.partial_path(model.digest).read_bytes()
    original = store.blob_path(model.digest).read_bytes()
    for record in completed:  # what the records claim is really on disk
        start = record["Offset"]
        end = start + record["Completed"]
        assert data[start:end] == original[start:end]

    monkeypatch.setattr(disk, "pwrite_all", real)
    await collect(pull_model(other_store, str(name), options(settings=BIG_PARTS)))
    assert other_store.blob_path(model.digest).read_bytes() == original


def test_many_records_are_all_removed(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    store.blobs_dir.mkdir(parents=True)
    digest = Digest.of_bytes(b"blob")
    for n in range(20):
        store.partial_path(digest, f"-{n}").write_text("{}")
    other = store.partial_path(Digest.of_bytes(b"other"), "-0")
    other.write_text("{}")
    remove_records(store, digest)
    assert list(store.blobs_dir.iterdir()) == [other]
