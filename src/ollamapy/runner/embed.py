"""Sentence embeddings on the runner's context (`POST /embedding`).

Embedding models (BERT-like, with a pooling type in their GGUF) get an embeddings
context from the loader (`is_embedding_model`), with room for several sequences so that
a request's inputs are evaluated together: each input is one sequence of a single batch
(a few batches when they do not fit), and the pooled vector of each sequence is read
with `llama_get_embeddings_seq`. Vectors are returned raw, as the rows of one float32
matrix copied straight out of llama.cpp's buffer (no Python float per value);
normalising is the server's business.

Generative models embed too, like in Ollama: `DecoderEmbedder` makes a second, small
context on the same loaded model the first time it is asked, with embeddings on and
`DECODER_POOLING` (the last token's hidden state), so the engine's context and its KV
cache are never touched. That context is used only under `_LOCK` and freed with the
runner.

Decoding holds `_LOCK`, so embedding requests never decode concurrently on a context.
The engine never runs on an embedding model (the server refuses generate/chat on them).
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Sequence

import llama_cpp as lc
import numpy as np
import numpy.typing as npt

from ollamapy.errors import BadRequestError
from ollamapy.runner.native import Batch, Context, Model, NativeError
from ollamapy.runner.startup import EMBEDDING_ARCHS

EMBED_MAX_SEQS = 16
"""Sequences an embedding model's context holds: inputs evaluated in one batch."""
DECODER_POOLING = lc.LLAMA_POOLING_TYPE_LAST
"""How a generative model's token states become one vector (Ollama: the last token)."""
DECODER_EMBED_MAX_CTX = 2048
"""Tokens a generative model's embedding context holds, all its sequences together.

A whole input must fit in one micro-batch, so this is also the micro-batch size, which
sizes the compute buffer (about 800 MiB for SmolLM2 at 4096, a quarter of it at 2048).
Longer inputs are truncated (or refused with `truncate: false`).
"""

_LOCK = threading.Lock()

Matrix = npt.NDArray[np.float32]
"""Embeddings, one row per input (C-contiguous float32)."""


def _meta(model: Model, key: str) -> str | None:
    buf = ctypes.create_string_buffer(256)
    n = lc.llama_model_meta_val_str(model.ptr, key.encode(), buf, len(buf))
    return None if n < 0 else buf.value.decode("utf-8", errors="replace")


def is_embedding_model(model: Model) -> bool:
    """True for a model made to embed: a pooling type in its GGUF, or a BERT-like arch."""
    arch = _meta(model, "general.architecture") or ""
    pooling = _meta(model, f"{arch}.pooling_type")
    if pooling is not None:
        try:
            return int(pooling) != lc.LLAMA_POOLING_TYPE_NONE
        except ValueError:
            return False
    return arch in EMBEDDING_ARCHS


def embedding_context_size(model: Model, num_ctx: int, num_batch: int) -> tuple[int, int]:
    """(tokens per sequence, batch size) for an embedding model's context.

    A sequence never exceeds what the model was trained on, and a whole sequence must fit
    in one micro-batch (non-causal attention sees all of it at once).
    """
    n_ctx_seq = max(1, min(num_ctx, model.n_ctx_train or num_ctx))
    return n_ctx_seq, max(num_batch, n_ctx_seq)


def fit_input(tokens: list[int], limit: int, keep_last: bool) -> list[int]:
    """Cut `tokens` to `limit`, keeping the trailing special token (e.g. [SEP]) if asked."""
    if len(tokens) <= limit:
        return tokens
    if keep_last and limit >= 2:
        return [*tokens[: limit - 1], tokens[-1]]
    return tokens[:limit]


def plan_batches(lengths: Sequence[int], n_batch: int, n_seq: int) -> list[list[int]]:
    """Group input indices into batches of at most `n_batch` tokens and `n_seq` inputs."""
    groups: list[list[int]] = []
    current: list[int] = []
    used = 0
    for index, length in enumerate(lengths):
        if current and (used + length > n_batch or len(current) >= n_seq):
            groups.append(current)
            current, used = [], 0
        current.append(index)
        used += length
    if current:
        groups.append(current)
    return groups


class EmbeddingStopped(Exception):
    """The request's `stop` was set (its client left) before every batch was decoded."""


def embed(
    model: Model,
    ctx: Context,
    contents: Sequence[str],
    *,
    truncate: bool,
    enabled: bool,
    stop: threading.Event | None = None,
) -> tuple[Matrix, int]:
    """Embed each text; return the raw vectors (rows) and the number of tokens evaluated.

    `enabled` says whether the context was created with embeddings on. Once `stop` is set
    no further batch is decoded (`EmbeddingStopped`): a large request whose client left
    ends at the next batch instead of holding the embedding thread to its end.
    """
    pooled = lc.llama_pooling_type(ctx.ptr) != lc.LLAMA_POOLING_TYPE_NONE
    if not enabled or not pooled:
        # A context without pooling belongs to a generative model whose KV cache the
        # engine owns; embedding on it would race the generation loop.
        raise BadRequestError("this model does not support embeddings")
    with _LOCK:
        return _embed_locked(model, ctx, contents, truncate=truncate, stop=stop)


def _embed_locked(
    model: Model,
    ctx: Context,
    contents: Sequence[str],
    *,
    truncate: bool,
    stop: threading.Event | None = None,
) -> tuple[Matrix, int]:
    pooled = lc.llama_pooling_type(ctx.ptr) != lc.LLAMA_POOLING_TYPE_NONE
    n_batch = int(lc.llama_n_batch(ctx.ptr))
    limit = min(ctx.n_ctx_seq, n_batch)
    keep_last = bool(lc.llama_vocab_get_add_eos(model.vocab))
    inputs: list[list[int]] = []
    for text in contents:
        tokens = model.tokenize(text, add_special=True, parse_special=False)
        if not tokens:
            raise BadRequestError("input is empty after tokenization")
        if len(tokens) > limit:
            if not truncate:
                raise BadRequestError("input length exceeds the context length")
            tokens = fit_input(tokens, limit, keep_last)
        inputs.append(tokens)
    vectors = np.empty((len(inputs), model.n_embd), dtype=np.float32)
    lengths = [len(t) for t in inputs]
    groups = plan_batches(lengths, n_batch, ctx.n_seq_max)
    # A batch just big enough for the largest group: setting up all `n_batch` slots
    # cost more than tokenizing and copying out a short request.
    capacity = max((sum(lengths[i] for i in group) for group in groups), default=1)
    with Batch(capacity) as batch:
        for group in groups:
            if stop is not None and stop.is_set():
                raise EmbeddingStopped()
            _decode_group(ctx, batch, [inputs[i] for i in group], pooled, vectors, group)
    return vectors, sum(lengths)


class DecoderEmbedder:
    """A generative model's own embeddings context, made on the first request.

    The context shares the loaded model's weights but has its own (unified) KV cache of
    at most `DECODER_EMBED_MAX_CTX` tokens, so embedding never disturbs generation.
    """

    def __init__(
        self,
        model: Model,
        *,
        num_ctx: int,
        n_threads: int,
        flash_attention: bool | None = None,
        kv_cache_type: str | None = None,
    ) -> None:
        self._model = model
        self._n_ctx = max(1, min(num_ctx, model.n_ctx_train or num_ctx, DECODER_EMBED_MAX_CTX))
        self._n_threads = n_threads
        self._flash_attention = flash_attention
        self._kv_cache_type = kv_cache_type
        self._ctx: Context | None = None
        self._closed = False

    @property
    def context(self) -> Context | None:
        """The embeddings context, once a request has made it."""
        return self._ctx

    def _context(self) -> Context:
        if self._closed:
            raise NativeError("the model is being unloaded")
        if self._ctx is None:
            self._ctx = Context(
                self._model,
                n_ctx_seq=self._n_ctx,
                n_seq_max=EMBED_MAX_SEQS,
                n_batch=self._n_ctx,
                n_threads=self._n_threads,
                flash_attention=self._flash_attention,
                kv_cache_type=self._kv_cache_type,
                embeddings=True,
                pooling=DECODER_POOLING,
                kv_unified=True,
            )
        return self._ctx

    def request_threads(self, n_threads: int) -> None:
        """Use `n_threads` from the next decode on (the context made later too)."""
        self._n_threads = n_threads
        if self._ctx is not None:
            self._ctx.request_threads(n_threads)

    def embed(
        self, contents: Sequence[str], *, truncate: bool, stop: threading.Event | None = None
    ) -> tuple[Matrix, int]:
        """Like `embed`, on this model's embeddings context (made now if needed)."""
        with _LOCK:
            context = self._context()
            return _embed_locked(self._model, context, contents, truncate=truncate, stop=stop)

    def close(self) -> None:
        with _LOCK:
            self._closed = True
            if self._ctx is not None:
                self._ctx.close()
                self._ctx = None


def _decode_group(
    ctx: Context,
    batch: Batch,
    inputs: list[list[int]],
    pooled: bool,
    vectors: Matrix,
    indices: list[int],
) -> None:
    batch.clear()
    ctx.clear()
    last: list[int] = []
    for seq, tokens in enumerate(inputs):
        start = batch.n_tokens
        for offset, token in enumerate(tokens):
            batch.add(token, offset, seq, pooled or offset == len(tokens) - 1)
        last.append(start + len(tokens) - 1)
    rc = ctx.decode(batch)
    if rc != 0:
        raise NativeError(f"llama_decode returned {rc} while embedding")
    base, row_bytes = vectors.ctypes.data, vectors.shape[1] * vectors.itemsize
    for seq, index in enumerate(indices):
        if pooled:
            ptr = lc.llama_get_embeddings_seq(ctx.ptr, seq)
        else:
            ptr = lc.llama_get_embeddings_ith(ctx.ptr, last[seq])
        if not ptr:
            raise NativeError("llama.cpp returned no embedding")
        # One memcpy per row into the result (llama.cpp's buffer is reused by the next
        # decode); reading `ptr[:n]` would make a Python float of every value.
        ctypes.memmove(base + index * row_bytes, ptr, row_bytes)
    ctx.clear()
