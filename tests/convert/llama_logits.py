"""Run a converted causal model through llama.cpp (our native wrappers) for ids and logits.

This is the path the runner takes (`ollamapy.runner.native`: model, context, batch), so the
numbers compared with Hugging Face's are the numbers a user's generation is built on.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import llama_cpp as lc
import numpy as np
import numpy.typing as npt

from ollamapy.runner.native import Batch, Context, Model, init_backend


@contextmanager
def load(path: Path) -> Iterator[Model]:
    """Load a GGUF on the CPU and free it afterwards."""
    init_backend()
    with Model(str(path)) as model:
        yield model


def tokenize(model: Model, text: str) -> list[int]:
    """llama.cpp's tokenizer as a chat prompt uses it: BOS per the GGUF, specials parsed."""
    return model.tokenize(text, add_special=True, parse_special=True)


def logits(model: Model, ids: list[int]) -> npt.NDArray[np.float32]:
    """Logits at every position of one sequence, shape (len(ids), n_vocab), in a fresh
    context (f32 KV cache, so only the weights' storage type differs between runs)."""
    with (
        Context(
            model, n_ctx_seq=max(32, len(ids)), n_seq_max=1, n_batch=len(ids), n_threads=2
        ) as ctx,
        Batch(len(ids)) as batch,
    ):
        for i, token in enumerate(ids):
            batch.add(token, i, 0, True)
        assert ctx.decode(batch) == 0, "llama_decode failed"
        rows = [
            np.ctypeslib.as_array(lc.llama_get_logits_ith(ctx.ptr, i), shape=(model.n_vocab,))
            for i in range(len(ids))
        ]
        return np.array(rows, dtype=np.float32)
