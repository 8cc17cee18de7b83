"""What a request asks of the scheduler, beyond its options: the model's own limits, and
unloading by name.

`num_ctx` is capped to the context the model was trained with (its GGUF
`<arch>.context_length`), as Ollama caps it: a larger window gives the model nothing it can
use, yet its KV cache is allocated in full (65536 for SmolLM2, trained on 8192, built a
7.5 GB runner). The cap is applied while options are merged, so the scheduler plans
memory, matches runners and lists `/api/ps` with the size the runner really gets.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import replace
from pathlib import Path

from ollamapy import gguf
from ollamapy.errors import GGUFError
from ollamapy.server.resolved import resolve
from ollamapy.server.state import ServerState
from ollamapy.types import ModelName, RunnerOptions, parse_duration

log = logging.getLogger(__name__)

MIN_NUM_CTX = 4
"""Smaller (positive) contexts are raised to this, as Ollama raises them; zero or less is
refused by the option checks."""


@functools.lru_cache(maxsize=64)
def model_header(path: Path) -> gguf.GGUFInfo | None:
    """A model file's GGUF header (vocabularies skipped), read once per blob: blobs never
    change. None when it cannot be read (the runner then reports what is wrong)."""
    try:
        return gguf.read_gguf(path, keep_arrays=0)
    except (GGUFError, OSError):
        return None


def trained_context(path: Path) -> int | None:
    """The context length a model file declares; None when it declares none."""
    header = model_header(path)
    length = None if header is None else header.context_length
    return length if length and length > 0 else None


def fit_to_model(options: RunnerOptions, model_path: Path) -> RunnerOptions:
    """`options` with `num_ctx` at least `MIN_NUM_CTX` and no larger than the model's
    trained context."""
    num_ctx = max(options.num_ctx, MIN_NUM_CTX)
    trained = trained_context(model_path)
    if trained is not None and num_ctx > trained:
        _warn_capped(model_path, num_ctx, trained)
        num_ctx = trained
    return options if num_ctx == options.num_ctx else replace(options, num_ctx=num_ctx)


@functools.lru_cache(maxsize=256)
def _warn_capped(model_path: Path, requested: int, trained: int) -> None:
    """Say so once per model and requested size (not on every request)."""
    log.warning(
        "requested context size too large for model: num_ctx=%d n_ctx_train=%d (%s); using %d",
        requested,
        trained,
        model_path.name,
        trained,
    )


def is_unload(has_input: bool, keep_alive: object) -> bool:
    """Whether a generate or chat request only asks to unload its model (what `ollama
    stop` sends: no prompt or messages, and keep_alive 0)."""
    return not has_input and keep_alive is not None and parse_duration(keep_alive) == 0


async def unload(state: ServerState, model: str) -> None:
    """Unload `model` if loaded, whatever it can do (embedding models too): only its name
    is resolved (404 if it is not installed), no capability or option is checked."""
    resolved = await asyncio.to_thread(resolve, state.store, ModelName.parse(model))
    if resolved.model_path is not None:
        await state.scheduler.unload(resolved.model_path)
