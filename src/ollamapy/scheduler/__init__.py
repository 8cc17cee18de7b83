"""Which runners are loaded: load on demand, share, keep alive, evict, unload."""

from ollamapy.scheduler.memory import (
    InsufficientMemoryError,
    MemoryEstimate,
    MemoryPool,
    MemorySnapshot,
    ModelShape,
)
from ollamapy.scheduler.scheduler import (
    Estimator,
    LoadedModel,
    ManagedRunner,
    MemoryProbe,
    ModelLoad,
    RunnerFactory,
    Scheduler,
    SetThreads,
)

__all__ = [
    "Estimator",
    "InsufficientMemoryError",
    "LoadedModel",
    "ManagedRunner",
    "MemoryEstimate",
    "MemoryPool",
    "MemoryProbe",
    "MemorySnapshot",
    "ModelLoad",
    "ModelShape",
    "RunnerFactory",
    "Scheduler",
    "SetThreads",
]
