"""A loaded model with its engine running, for the tests that drive the engine directly."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ollamapy.runner.engine import Engine
from ollamapy.runner.launch import LaunchArgs
from ollamapy.runner.loader import LoadedModel, load
from ollamapy.runner.native import init_backend
from ollamapy.runner.speculate import DecodeCost


@contextlib.contextmanager
def running_engine(
    model_path: Path, *, draft_cost: DecodeCost | None = None, **launch: Any
) -> Iterator[tuple[LoadedModel, Engine]]:
    """Load `model_path` as a runner would (`launch` as LaunchArgs fields) and start its
    engine (`draft_cost` as the Engine's); both are closed on exit."""
    init_backend()
    loaded = load(LaunchArgs(model=str(model_path), **launch))
    engine = Engine(
        loaded.model, loaded.context, n_batch=loaded.args.num_batch, draft_cost=draft_cost
    )
    engine.start()
    try:
        yield loaded, engine
    finally:
        engine.close()
        loaded.close()
