"""Run a converted GGUF through llama.cpp's low-level API to get tokens and embeddings.

This is how the real runner will use the model (embeddings context, pooling taken from the
GGUF), so the numbers compared against the numpy oracle are the numbers users will get.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp as lc
import numpy as np
import numpy.typing as npt

_BACKEND_READY = False


@dataclass
class LoadedModel:
    """A loaded llama.cpp model with its vocabulary handle."""

    model: Any
    vocab: Any

    @property
    def n_ctx_train(self) -> int:
        return int(lc.llama_model_n_ctx_train(self.model))

    @property
    def n_embd(self) -> int:
        return int(lc.llama_model_n_embd(self.model))

    def meta(self, key: str) -> str | None:
        """A GGUF metadata value as llama.cpp parsed it (as a string)."""
        buf = ctypes.create_string_buffer(4096)
        n = lc.llama_model_meta_val_str(self.model, key.encode(), buf, len(buf))
        return None if n < 0 else buf.value.decode()

    def tokenize(self, text: str) -> list[int]:
        """llama.cpp's tokenizer with special tokens added, as for an embedding request."""
        raw = text.encode()
        capacity = len(raw) + 8
        buf = (lc.llama_token * capacity)()
        n = lc.llama_tokenize(self.vocab, raw, len(raw), buf, capacity, True, False)
        assert n >= 0, f"llama_tokenize needed {-n} slots"
        return list(buf[:n])

    def embed(self, ids: list[int]) -> npt.NDArray[np.float32]:
        """Pooled sequence embedding for one sequence (pooling type from the model)."""
        params = lc.llama_context_default_params()
        params.n_ctx = self.n_ctx_train
        params.n_batch = params.n_ubatch = self.n_ctx_train
        params.n_threads = params.n_threads_batch = 2
        params.embeddings = True
        ctx = lc.llama_init_from_model(self.model, params)
        assert ctx, "llama_init_from_model failed"
        batch = lc.llama_batch_init(len(ids), 0, 1)
        try:
            for i, token in enumerate(ids):
                batch.token[i] = token
                batch.pos[i] = i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = True
            batch.n_tokens = len(ids)
            assert lc.llama_encode(ctx, batch) == 0, "llama_encode failed"
            ptr = lc.llama_get_embeddings_seq(ctx, 0)
            assert ptr, "no pooled embedding (is pooling_type set?)"
            return np.ctypeslib.as_array(ptr, shape=(self.n_embd,)).copy()
        finally:
            lc.llama_batch_free(batch)
            lc.llama_free(ctx)


@contextmanager
def load(path: Path) -> Iterator[LoadedModel]:
    """Load a GGUF on the CPU and free it afterwards."""
    global _BACKEND_READY
    if not _BACKEND_READY:
        lc.llama_log_set(_SILENT, ctypes.c_void_p(0))
        lc.llama_backend_init()
        _BACKEND_READY = True
    params = lc.llama_model_default_params()
    params.n_gpu_layers = 0
    model = lc.llama_model_load_from_file(str(path).encode(), params)
    assert model, f"llama.cpp could not load {path}"
    try:
        yield LoadedModel(model, lc.llama_model_get_vocab(model))
    finally:
        lc.llama_model_free(model)


def _discard_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    """Keep llama.cpp's load chatter out of the test output."""


_SILENT: Any = lc.llama_log_callback(_discard_log)
