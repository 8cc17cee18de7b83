"""GPU discovery and layer offload, specified with fake devices (no GPU needed): NVML
through a fake `pynvml`, `CUDA_VISIBLE_DEVICES` as CUDA reads it, the layer fit, and the
scheduler telling the runner how many layers to offload and `ollama ps` what it shows."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ollamapy.cli.tables import processor
from ollamapy.scheduler import MemoryEstimate, MemoryPool, MemorySnapshot, ModelLoad, Scheduler
from ollamapy.scheduler.gpu import (
    GpuDevice,
    NvmlProbe,
    flash_attention_supported,
    plan_offload,
    visible,
)
from ollamapy.scheduler.memory import RUNNER_OVERHEAD
from ollamapy.types import RunnerOptions

GIB = 1 << 30
MIB = 1 << 20


def gpu(index: int, free_gib: float, cc: tuple[int, int] = (8, 9)) -> GpuDevice:
    return GpuDevice(index, f"GPU-{index}abc", f"Fake {index}", 24 * GIB, int(free_gib * GIB), cc)


DEVICES = [gpu(0, 20), gpu(1, 10), gpu(2, 5)]


# ---------------------------------------------------------------- CUDA_VISIBLE_DEVICES


@pytest.mark.parametrize(
    ("setting", "uuids"),
    [
        (None, ["GPU-0abc", "GPU-1abc", "GPU-2abc"]),
        ("2,0", ["GPU-2abc", "GPU-0abc"]),
        ("GPU-1", ["GPU-1abc"]),
        ("1,7,0", ["GPU-1abc"]),  # an invalid entry hides the rest
        ("0,0,1", ["GPU-0abc"]),  # so does a repeated one
        ("", []),
        ("-1", []),
    ],
    ids=["unset", "reordered", "uuid-prefix", "invalid-stops", "repeat-stops", "empty", "minus"],
)
def test_cuda_visible_devices_as_cuda_reads_it(setting: str | None, uuids: list[str]) -> None:
    chosen = visible(DEVICES, setting)
    assert [d.uuid for d in chosen] == uuids
    assert [d.index for d in chosen] == list(range(len(uuids)))  # renumbered like CUDA


# -------------------------------------------------------------------------------- NVML


class FakeNvml:
    """The slice of `pynvml` that `NvmlProbe` uses, over a list of devices."""

    def __init__(self, devices: list[GpuDevice], fail: bool = False) -> None:
        self.devices, self.fail, self.inits = devices, fail, 0

    def nvmlInit(self) -> None:
        if self.fail:
            raise RuntimeError("NVML Shared Library Not Found")
        self.inits += 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> GpuDevice:
        return self.devices[index]

    def nvmlDeviceGetMemoryInfo(self, handle: GpuDevice) -> Any:
        return SimpleNamespace(total=handle.total, free=handle.free, used=0)

    def nvmlDeviceGetCudaComputeCapability(self, handle: GpuDevice) -> tuple[int, int]:
        return handle.compute_capability

    def nvmlDeviceGetUUID(self, handle: GpuDevice) -> bytes:
        return handle.uuid.encode()  # older pynvml returns bytes

    def nvmlDeviceGetName(self, handle: GpuDevice) -> str:
        return handle.name


def test_nvml_lists_devices_with_memory_and_compute_capability() -> None:
    nvml = FakeNvml(DEVICES)
    probe = NvmlProbe(nvml, env={})
    assert probe() == DEVICES
    assert probe() == DEVICES
    assert nvml.inits == 1  # initialised once per process


def test_nvml_honours_cuda_visible_devices() -> None:
    probe = NvmlProbe(FakeNvml(DEVICES), env={"CUDA_VISIBLE_DEVICES": "2"})
    assert [(d.index, d.uuid) for d in probe()] == [(0, "GPU-2abc")]


def test_without_nvml_there_are_no_devices() -> None:
    assert NvmlProbe(FakeNvml(DEVICES, fail=True), env={})() == []


def test_flash_attention_needs_every_gpu_to_be_volta_or_newer() -> None:
    assert flash_attention_supported([gpu(0, 1, (7, 0)), gpu(1, 1, (9, 0))])
    assert not flash_attention_supported([gpu(0, 1, (8, 6)), gpu(1, 1, (6, 1))])
    assert not flash_attention_supported([])


# ----------------------------------------------------------------------------- offload

# 32 layers + output: 33 equal weight shares of 33 MiB (1 MiB each), KV 1 MiB per layer,
# and a 10 MiB compute graph on top of the runner process.
ESTIMATE = MemoryEstimate(
    weights=33 * MIB, kv_cache=32 * MIB, compute=RUNNER_OVERHEAD + 10 * MIB, layers=32
)
PER_LAYER = 2 * MIB
GRAPH = 10 * MIB


def pools(*free_mib: int) -> list[MemoryPool]:
    return [MemoryPool(24 * GIB, free * MIB) for free in free_mib]


def test_a_model_that_fits_is_offloaded_whole() -> None:
    offload = plan_offload(ESTIMATE, pools(1024))
    assert offload.layers == 33  # every repeating layer and the output layer
    assert offload.vram == ESTIMATE.total
    assert processor(ESTIMATE.total, offload.vram) == "100% GPU"


def test_a_model_too_big_is_split_between_gpu_and_cpu() -> None:
    offload = plan_offload(ESTIMATE, pools(GRAPH // MIB + 20 * PER_LAYER // MIB))
    assert offload.layers == 20
    assert offload.vram == 20 * PER_LAYER + GRAPH
    assert processor(ESTIMATE.total, offload.vram).endswith("% CPU/GPU")


def test_layers_spread_over_gpus_most_free_first() -> None:
    room = GRAPH // MIB
    offload = plan_offload(ESTIMATE, pools(room + 2 * 2, room + 30 * 2))
    assert offload.per_device == (2, 30)  # the second GPU has more room: it goes first
    assert offload.layers == 32  # every repeating layer, but no room left for the output
    assert offload.vram == 32 * PER_LAYER + 2 * GRAPH


@pytest.mark.parametrize(
    ("estimate", "gpus"),
    [(ESTIMATE, pools(GRAPH // MIB)), (ESTIMATE, []), (MemoryEstimate(GIB), pools(4096))],
    ids=["no-room-beyond-the-graph", "no-gpu", "unknown-layer-count"],
)
def test_nothing_offloaded(estimate: MemoryEstimate, gpus: list[MemoryPool]) -> None:
    offload = plan_offload(estimate, gpus)
    assert (offload.layers, offload.vram) == (0, 0)


# --------------------------------------------------------------------------- scheduler


class Runner:
    def __init__(self, load: ModelLoad) -> None:
        self.load, self.alive = load, True

    async def close(self) -> None:
        self.alive = False


def on_gpus(*free_mib: int) -> tuple[Scheduler[Runner], list[ModelLoad]]:
    started: list[ModelLoad] = []

    async def factory(load: ModelLoad) -> Runner:
        await asyncio.sleep(0)
        started.append(load)
        return Runner(load)

    snapshot = MemorySnapshot(MemoryPool(64 * GIB, 64 * GIB), tuple(pools(*free_mib)))
    scheduler = Scheduler(
        factory,
        default_keep_alive=300.0,
        estimator=lambda load, parallel: ESTIMATE,
        memory=lambda: snapshot,
    )
    return scheduler, started


def load(num_gpu: int = -1) -> ModelLoad:
    return ModelLoad("m", Path("/blobs/m"), "sha256:m", RunnerOptions(num_gpu=num_gpu))


@pytest.mark.parametrize(
    ("num_gpu", "free_mib", "runner_layers", "shown"),
    [
        (-1, 1024, 33, "100% GPU"),
        (-1, 10 + 2 * 16, 16, "CPU/GPU"),
        (0, 1024, 0, "100% CPU"),
        (8, 1024, 8, "100% GPU"),  # the user's count is passed through unchanged
    ],
    ids=["fits", "partial", "cpu-only", "explicit"],
)
async def test_the_runner_gets_the_layers_that_fit_and_ps_shows_where(
    num_gpu: int, free_mib: int, runner_layers: int, shown: str
) -> None:
    scheduler, started = on_gpus(free_mib)
    async with scheduler.use(load(num_gpu)):
        pass
    async with scheduler.use(load(num_gpu)):  # the same request reuses the runner
        pass
    assert [s.options.num_gpu for s in started] == [runner_layers]
    (entry,) = scheduler.loaded()
    assert processor(entry.memory.total, entry.size_vram).endswith(shown)
    await scheduler.shutdown()
