"""Which runners are loaded: load on demand, share, keep alive, evict, unload."""

from ollamapy.scheduler.scheduler import (
    LoadedModel,
    ManagedRunner,
    ModelLoad,
    RunnerFactory,
    Scheduler,
)

__all__ = ["LoadedModel", "ManagedRunner", "ModelLoad", "RunnerFactory", "Scheduler"]
