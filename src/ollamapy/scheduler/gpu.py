"""NVIDIA GPUs: which ones this server may use, and how many of a model's layers fit on them.

Discovery goes through NVML (the `nvidia-ml-py` package, installed by the CUDA install
switch) behind the `DeviceProbe` Protocol, so the fitting logic is tested with fake device
lists on any machine. `CUDA_VISIBLE_DEVICES` is honoured as CUDA honours it: indices or
`GPU-` UUIDs, in the listed order, and the first invalid entry hides the rest.

The fit follows Ollama's idea (its `llm/memory.go`), with our own arithmetic on the same
GGUF-derived estimate the scheduler already makes: a model is `n_layer` repeating layers
(each an equal share of the weights and of the KV cache) plus the output layer; a GPU that
takes any layer also holds llama.cpp's compute graph. Layers go to the devices in order of
free memory until none fits; the rest run on the CPU. All layers plus the output layer
fitting is a full offload (`100% GPU`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

from ollamapy.scheduler.memory import (
    RUNNER_OVERHEAD,
    MemoryEstimate,
    MemoryPool,
    llama_offloads,
    read_gpu_memory,
)

log = logging.getLogger(__name__)

FLASH_ATTENTION_MIN_CC = (7, 0)
"""llama.cpp's CUDA flash attention kernels need Volta or newer."""


@dataclass(frozen=True, slots=True)
class GpuDevice:
    """One usable GPU, as NVML reports it."""

    index: int
    """The device's position among the visible devices (what llama.cpp calls it)."""
    uuid: str
    name: str
    total: int
    free: int
    compute_capability: tuple[int, int]

    @property
    def pool(self) -> MemoryPool:
        return MemoryPool(self.total, self.free)


class DeviceProbe(Protocol):
    """Lists the GPUs this server may use, with their free memory now (blocking is fine)."""

    def __call__(self) -> list[GpuDevice]: ...


def visible(devices: Sequence[GpuDevice], setting: str | None) -> list[GpuDevice]:
    """The devices `CUDA_VISIBLE_DEVICES=setting` leaves, renumbered in the listed order.

    Unset: every device. Empty or `-1`: none. Entries are indices or (prefixes of) UUIDs;
    like CUDA, the list stops at the first entry that names no device, and a device
    listed twice hides the rest."""
    if setting is None:
        return list(devices)
    chosen: list[GpuDevice] = []
    for entry in (part.strip() for part in setting.split(",")):
        match = _find(devices, entry)
        if match is None or match in chosen:
            break
        chosen.append(match)
    return [_renumbered(device, n) for n, device in enumerate(chosen)]


def _find(devices: Sequence[GpuDevice], entry: str) -> GpuDevice | None:
    if entry.isdigit():
        return next((d for d in devices if d.index == int(entry)), None)
    if entry.startswith("GPU-"):
        found = [d for d in devices if d.uuid.startswith(entry)]
        return found[0] if len(found) == 1 else None
    return None


def _renumbered(device: GpuDevice, index: int) -> GpuDevice:
    return GpuDevice(
        index, device.uuid, device.name, device.total, device.free, device.compute_capability
    )


def flash_attention_supported(devices: Sequence[GpuDevice]) -> bool:
    """Whether flash attention should be on by default: GPUs present, all new enough."""
    return bool(devices) and all(d.compute_capability >= FLASH_ATTENTION_MIN_CC for d in devices)


# ------------------------------------------------------------------------------- offload


@dataclass(frozen=True, slots=True)
class Offload:
    """How a load splits between GPUs and CPU."""

    layers: int
    """llama.cpp's `n_gpu_layers`: repeating layers on GPUs, plus 1 for the output layer."""
    vram: int
    """Bytes the load will hold in GPU memory (`size_vram`)."""
    per_device: tuple[int, ...] = ()
    """Layers placed on each device, in device order."""


def plan_offload(estimate: MemoryEstimate, gpus: Sequence[MemoryPool]) -> Offload:
    """How many layers of a load fit in the free memory of `gpus` (pure).

    Each repeating layer costs `weights / (n_layer + 1)` (the `+ 1` is the output layer
    with the token embeddings) plus `kv_cache / n_layer`; a device holding any layer also
    holds the compute graph (the estimate's compute share beyond the runner process).
    A model with no layer count, or no device, runs on the CPU."""
    n_layer = estimate.layers
    if n_layer <= 0 or not gpus:
        return Offload(0, 0, tuple(0 for _ in gpus))
    layer_weights = estimate.weights // (n_layer + 1)
    per_layer = max(1, layer_weights + estimate.kv_cache // n_layer)
    graph = max(0, estimate.compute - RUNNER_OVERHEAD)
    placed = [0] * len(gpus)
    room = [0] * len(gpus)
    left = n_layer
    for i in sorted(range(len(gpus)), key=lambda i: -gpus[i].available):
        usable = gpus[i].available - graph
        placed[i] = max(0, min(left, usable // per_layer))
        room[i] = usable - placed[i] * per_layer if placed[i] else 0
        left -= placed[i]
    layers = sum(placed)
    if layers == 0:
        return Offload(0, 0, tuple(placed))
    if left == 0 and any(r >= layer_weights for r in room):
        return Offload(n_layer + 1, estimate.total, tuple(placed))  # the output layer too
    vram = layers * per_layer + graph * sum(1 for p in placed if p)
    return Offload(layers, min(vram, estimate.total - 1), tuple(placed))


# ------------------------------------------------------------------------------- NVML


class NvmlProbe:
    """`DeviceProbe` over NVML; no devices when NVML or its driver is missing.

    `nvml` is the `pynvml` module (from `nvidia-ml-py`); tests pass a fake one."""

    def __init__(self, nvml: ModuleType | Any | None = None, env: dict[str, str] | None = None):
        self._nvml = nvml
        self._env = os.environ if env is None else env
        self._ready = False

    def __call__(self) -> list[GpuDevice]:
        nvml = self._module()
        if nvml is None:
            return []
        try:
            if not self._ready:
                nvml.nvmlInit()
                self._ready = True
            devices = [_device(nvml, i) for i in range(nvml.nvmlDeviceGetCount())]
        except Exception as exc:  # NVMLError and its many subclasses; a missing driver
            log.debug("NVML: %s", exc)
            return []
        return visible(devices, self._env.get("CUDA_VISIBLE_DEVICES"))

    def _module(self) -> Any:
        if self._nvml is None:
            try:
                import pynvml  # type: ignore[import-not-found,unused-ignore]
            except ImportError:
                return None
            self._nvml = pynvml
        return self._nvml


def _device(nvml: Any, index: int) -> GpuDevice:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    memory = nvml.nvmlDeviceGetMemoryInfo(handle)
    major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
    return GpuDevice(
        index=index,
        uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
        name=_text(nvml.nvmlDeviceGetName(handle)),
        total=int(memory.total),
        free=int(memory.free),
        compute_capability=(int(major), int(minor)),
    )


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


# ------------------------------------------------------------------------------- probes

_default_probe = NvmlProbe()


def read_gpu_pools(probe: DeviceProbe = _default_probe) -> tuple[MemoryPool, ...]:
    """The scheduler's view of GPU memory: the visible NVIDIA devices when this llama.cpp
    build can offload (a CPU build ignores VRAM), from NVML, else from `nvidia-smi`."""
    if not llama_offloads():
        return ()
    devices = probe()
    return tuple(d.pool for d in devices) if devices else read_gpu_memory()


def default_flash_attention(probe: DeviceProbe = _default_probe) -> bool:
    """Flash attention on by default when this build offloads and every visible GPU has
    the kernels for it (Ollama turns it on where the hardware supports it)."""
    return llama_offloads() and flash_attention_supported(probe())
