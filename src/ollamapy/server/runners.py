"""The production runner factory and scheduler: llama.cpp runner processes, fitted to memory.

Separate from the routes so that `create_app` can take another scheduler (tests run fake
runners behind the `Runner` Protocol through the same app).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from ollamapy.config import Config
from ollamapy.llm import ProcessRunner, RunnerSpec, start_runner
from ollamapy.scheduler import ModelLoad, Scheduler
from ollamapy.scheduler.cores import physical_cores
from ollamapy.scheduler.gpu import default_flash_attention, read_gpu_pools
from ollamapy.scheduler.memory import GGUFEstimator, probe_memory

Progress = Callable[[ModelLoad, float], None]


def runner_factory(
    config: Config, on_progress: Progress | None = None
) -> Callable[[ModelLoad], Awaitable[ProcessRunner]]:
    """Start a llama.cpp runner process for a load (separate so tests can wrap it);
    `on_progress` hears how far each load has come."""

    async def factory(load: ModelLoad) -> ProcessRunner:
        spec = RunnerSpec(
            model_path=load.model_path,
            adapters=load.adapters,
            projector=load.projectors[0] if load.projectors else None,
            options=load.options,
            num_parallel=load.num_parallel,
            flash_attention=_flash_attention(config, load),
            kv_cache_type=config.kv_cache_type or None,
            draft_max=config.draft_max,
            verbose=config.debug,
            prompt_cache=config.prompt_cache,
            prompt_cache_dir=str(config.prompt_cache_dir) if config.prompt_cache else None,
        )
        progress = None if on_progress is None else functools.partial(on_progress, load)
        return await start_runner(spec, load_timeout=config.load_timeout, on_progress=progress)

    return factory


def _flash_attention(config: Config, load: ModelLoad) -> bool | None:
    """`OLLAMA_FLASH_ATTENTION`, or on by default for a load on GPUs that support it."""
    if config.flash_attention:
        return True
    if load.options.num_gpu != 0 and default_flash_attention():
        return True
    return None


def default_scheduler(
    config: Config,
    factory: Callable[[ModelLoad], Awaitable[ProcessRunner]] | None = None,
) -> Scheduler[ProcessRunner]:
    """The production scheduler: runner processes on llama.cpp, fitted to free memory; its
    runners report their load progress to it (shown by /api/ps)."""

    def progress(load: ModelLoad, value: float) -> None:
        scheduler.report_progress(load.key, value)

    scheduler: Scheduler[ProcessRunner] = Scheduler(
        factory or runner_factory(config, progress),
        default_keep_alive=config.keep_alive,
        max_loaded=config.max_loaded_models,
        max_queue=config.max_queue,
        estimator=GGUFEstimator(config.kv_cache_type),
        memory=functools.partial(probe_memory, gpus=read_gpu_pools),
        cores=physical_cores() if config.share_cores else 0,
        set_threads=ProcessRunner.set_threads,
    )
    return scheduler
