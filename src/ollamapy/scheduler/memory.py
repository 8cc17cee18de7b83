"""How much memory a load needs, and how much the machine has free.

Estimates come from GGUF metadata only (no model is loaded to measure), in the spirit of
Ollama's `llm/memory.go`: the weights (the file), the KV cache for every parallel sequence,
and an allowance for llama.cpp's compute buffers and the runner process itself. The
functions here are pure or take their inputs as arguments, so the scheduler's fit and
eviction logic is tested with fake numbers; only `probe_memory` touches the machine.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import logging
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ollamapy.errors import GGUFError, RunnerError
from ollamapy.gguf import GGUFInfo, read_gguf

if TYPE_CHECKING:
    from ollamapy.scheduler.scheduler import ModelLoad

log = logging.getLogger(__name__)

GIB = 1 << 30
MIB = 1 << 20
KV_BYTES_PER_ELEMENT: dict[str, float] = {"f16": 2.0, "q8_0": 1.0625, "q4_0": 0.5625}
"""Bytes per cached K/V element by `OLLAMA_KV_CACHE_TYPE` (q8_0/q4_0 include block scales)."""
RUNNER_OVERHEAD = 128 * MIB
"""The runner process itself: a Python interpreter with llama.cpp loaded, before the model."""
COMPUTE_MINIMUM = 32 * MIB
FLOAT_BYTES = 4
MEMINFO = Path("/proc/meminfo")


class InsufficientMemoryError(RunnerError):
    """A load that cannot fit even with every other model unloaded (HTTP 500, as Ollama)."""

    def __init__(self, required: int, available: int) -> None:
        super().__init__(
            f"model requires more system memory ({format_gib(required)}) "
            f"than is available ({format_gib(available)})"
        )
        self.required = required
        self.available = available


def format_gib(size: int) -> str:
    """Sizes in error messages read like Ollama's: one decimal, binary units."""
    if size >= GIB:
        return f"{size / GIB:.1f} GiB"
    return f"{size / MIB:.1f} MiB"


# ----------------------------------------------------------------------------- estimate


@dataclass(frozen=True, slots=True)
class ModelShape:
    """The few facts about a model that decide its memory use."""

    file_size: int
    n_layer: int = 0
    n_head: int = 0
    n_head_kv: int = 0
    key_length: int = 0
    value_length: int = 0
    n_vocab: int = 0

    @classmethod
    def from_gguf(cls, info: GGUFInfo) -> ModelShape:
        """Read the shape from metadata; absent keys give 0 (that part is then not counted)."""
        arch = info.architecture

        def number(suffix: str, default: int = 0) -> int:
            value = info.metadata.get(f"{arch}.{suffix}", default)
            if isinstance(value, list):  # per-layer head counts (some hybrid models)
                value = max((v for v in value if isinstance(v, int)), default=default)
            return value if isinstance(value, int) and not isinstance(value, bool) else default

        n_head = number("attention.head_count")
        head_dim = (info.embedding_length or 0) // n_head if n_head else 0
        return cls(
            file_size=info.file_size,
            n_layer=number("block_count"),
            n_head=n_head,
            n_head_kv=number("attention.head_count_kv", n_head),
            key_length=number("attention.key_length", head_dim),
            value_length=number("attention.value_length", head_dim),
            n_vocab=number("vocab_size") or info.array_lengths.get("tokenizer.ggml.tokens", 0),
        )


@dataclass(frozen=True, slots=True)
class MemoryEstimate:
    """What one runner is expected to hold, in bytes."""

    weights: int = 0
    kv_cache: int = 0
    compute: int = 0
    layers: int = 0
    """The model's repeating layers (`block_count`), for splitting it across devices."""

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.compute


def kv_cache_bytes(
    shape: ModelShape, num_ctx: int, num_parallel: int, cache_type: str = "f16"
) -> int:
    """K and V for every layer and every token of every parallel sequence."""
    per_element = KV_BYTES_PER_ELEMENT.get(cache_type or "f16", 2.0)
    n_ctx_total = num_ctx * num_parallel
    per_token = shape.n_layer * shape.n_head_kv * (shape.key_length + shape.value_length)
    return int(per_token * n_ctx_total * per_element)


def compute_bytes(shape: ModelShape, num_ctx: int, num_batch: int, num_parallel: int) -> int:
    """llama.cpp's scratch buffers: one batch's attention scores against a sequence's context
    and the last token's logits per sequence, plus the runner process's own footprint. Rough
    (measured runners stay below it), but enough to plan with."""
    scores = FLOAT_BYTES * num_batch * shape.n_head * num_ctx
    logits = FLOAT_BYTES * shape.n_vocab * num_parallel
    return RUNNER_OVERHEAD + max(COMPUTE_MINIMUM, scores + logits)


def estimate_memory(
    shape: ModelShape,
    *,
    num_ctx: int,
    num_parallel: int,
    num_batch: int = 512,
    cache_type: str = "f16",
) -> MemoryEstimate:
    """The memory a runner for `shape` needs with these settings (pure)."""
    return MemoryEstimate(
        weights=shape.file_size,
        kv_cache=kv_cache_bytes(shape, num_ctx, num_parallel, cache_type),
        compute=compute_bytes(shape, num_ctx, num_batch, num_parallel),
        layers=shape.n_layer,
    )


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def read_shape(path: Path) -> ModelShape:
    """The shape of a model file; a file that cannot be parsed counts by its size alone, so
    that the runner (not the estimate) reports why it cannot be loaded."""
    try:
        return ModelShape.from_gguf(read_gguf(path))
    except (GGUFError, OSError) as exc:
        log.warning("cannot estimate memory for %s: %s", path, exc)
        try:
            return ModelShape(file_size=path.stat().st_size)
        except OSError:
            return ModelShape(file_size=0)


class GGUFEstimator:
    """The production `Estimator`: a load's memory from its model file's metadata.

    Shapes are cached per file (blobs are content-addressed, so a path never changes
    meaning); the KV cache type is the server-wide `OLLAMA_KV_CACHE_TYPE`.
    """

    def __init__(self, cache_type: str = "f16") -> None:
        self._cache_type = cache_type or "f16"
        self._shapes: dict[Path, ModelShape] = {}

    def __call__(self, load: ModelLoad, num_parallel: int) -> MemoryEstimate:
        shape = self._shapes.get(load.model_path)
        if shape is None:
            shape = self._shapes[load.model_path] = read_shape(load.model_path)
        estimate = estimate_memory(
            shape,
            num_ctx=load.options.num_ctx,
            num_parallel=num_parallel,
            num_batch=load.options.num_batch,
            cache_type=self._cache_type,
        )
        # A vision projector loads with the model: its weights count too.
        projectors = sum(_file_size(path) for path in load.projectors)
        return dataclasses.replace(estimate, weights=estimate.weights + projectors)


# ----------------------------------------------------------------------------- free memory


@dataclass(frozen=True, slots=True)
class MemoryPool:
    """One kind of memory: its size and how much of it is free now, in bytes."""

    total: int
    available: int


@dataclass(frozen=True, slots=True)
class MemorySnapshot:
    """System memory and (when a GPU is present) each GPU's memory, at one moment."""

    system: MemoryPool
    gpus: tuple[MemoryPool, ...] = ()

    @property
    def total(self) -> int:
        return self.system.total + sum(g.total for g in self.gpus)

    @property
    def available(self) -> int:
        """llama.cpp puts what does not fit in VRAM in system memory, so the pools add up."""
        return self.system.available + sum(g.available for g in self.gpus)

    @property
    def vram_available(self) -> int:
        return sum(g.available for g in self.gpus)


UNLIMITED = MemorySnapshot(MemoryPool(1 << 62, 1 << 62))
"""The snapshot of a scheduler that was given no memory probe: everything fits."""


def parse_meminfo(text: str) -> MemoryPool:
    """`MemTotal`/`MemAvailable` from /proc/meminfo text (kB units)."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
            values[key.strip()] = int(fields[0]) * 1024
    total = values.get("MemTotal", 0)
    available = values.get("MemAvailable", values.get("MemFree", 0))
    return MemoryPool(total, available)


def read_system_memory(path: Path = MEMINFO) -> MemoryPool:
    """Free system memory; where /proc is absent, assume the whole of physical memory."""
    try:
        return parse_meminfo(path.read_text())
    except OSError:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        return MemoryPool(pages, pages)


def parse_nvidia_smi(text: str) -> tuple[MemoryPool, ...]:
    """`nvidia-smi --query-gpu=memory.total,memory.free --format=csv,noheader,nounits` (MiB)."""
    pools: list[MemoryPool] = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and all(p.isdigit() for p in parts):
            pools.append(MemoryPool(int(parts[0]) * MIB, int(parts[1]) * MIB))
    return tuple(pools)


@functools.cache
def llama_offloads() -> bool:
    """Whether the installed llama.cpp build has a CUDA backend (a CPU build ignores VRAM).

    Decided from the backend libraries shipped with the package, without importing it: the
    server process should not load llama.cpp (a CUDA backend would claim GPU memory).
    """
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return False
    for location in spec.submodule_search_locations:
        if any("cuda" in lib.name for lib in Path(location).glob("lib/*ggml*")):
            return True
    return False


def read_gpu_memory() -> tuple[MemoryPool, ...]:
    """NVIDIA GPUs' memory via nvidia-smi when it is installed and llama.cpp can offload;
    none otherwise (no new dependencies)."""
    tool = shutil.which("nvidia-smi")
    if tool is None or not llama_offloads():
        return ()
    query = ["--query-gpu=memory.total,memory.free", "--format=csv,noheader,nounits"]
    try:
        done = subprocess.run([tool, *query], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return ()
    return parse_nvidia_smi(done.stdout) if done.returncode == 0 else ()


def probe_memory(
    system: Callable[[], MemoryPool] = read_system_memory,
    gpus: Callable[[], tuple[MemoryPool, ...]] = read_gpu_memory,
) -> MemorySnapshot:
    """The machine's memory now (blocking: nvidia-smi is a subprocess)."""
    return MemorySnapshot(system(), gpus())
