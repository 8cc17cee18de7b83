"""Sentence embeddings on the runner's context (`POST /embedding`).

Embedding models (BERT-like, with a pooling type in their GGUF) get an embeddings
context from the loader (`is_embedding_model`), with room for several sequences so that
a request's inputs are evaluated together: each input is one sequence of a single batch
(a few batches when they do not fit), and the pooled vector of each sequence is read
with `llama_get_embeddings_seq`. A model without pooling yields the embedding of each
input's last token (`_decode_group` supports it; `embed` refuses such contexts for now).
Vectors are returned raw; normalising is the server's business.

Decoding holds `_LOCK`, so embedding requests never decode concurrently on the context.
The engine never runs on an embedding model (the server refuses generate/chat on them),
and a runner refuses `/embedding` on a context without pooling (a generative model).
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Sequence

import llama_cpp as lc

from ollamapy.errors import BadRequestError
from ollamapy.runner.native import Batch, Context, Model, NativeError

EMBEDDING_ARCHS = frozenset({"bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "neo-bert"})
EMBED_MAX_SEQS = 16
"""Sequences an embedding model's context holds: inputs evaluated in one batch."""

_LOCK = threading.Lock()


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


def embed(
    model: Model, ctx: Context, contents: Sequence[str], *, truncate: bool, enabled: bool
) -> tuple[list[list[float]], int]:
    """Embed each text; return the raw vectors and the number of tokens evaluated.

    `enabled` says whether the context was created with embeddings on.
    """
    pooled = lc.llama_pooling_type(ctx.ptr) != lc.LLAMA_POOLING_TYPE_NONE
    if not enabled or not pooled:
        # A context without pooling belongs to a generative model whose KV cache the
        # engine owns; embedding on it would race the generation loop.
        raise BadRequestError("this model does not support embeddings")
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
    vectors: list[list[float]] = [[] for _ in inputs]
    with _LOCK:
        groups = plan_batches([len(t) for t in inputs], n_batch, ctx.n_seq_max)
        with Batch(n_batch) as batch:
            for group in groups:
                _decode_group(model, ctx, batch, [inputs[i] for i in group], pooled, vectors, group)
    return vectors, sum(len(t) for t in inputs)


def _decode_group(
    model: Model,
    ctx: Context,
    batch: Batch,
    inputs: list[list[int]],
    pooled: bool,
    vectors: list[list[float]],
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
    n_embd = model.n_embd
    for seq, index in enumerate(indices):
        if pooled:
            ptr = lc.llama_get_embeddings_seq(ctx.ptr, seq)
        else:
            ptr = lc.llama_get_embeddings_ith(ctx.ptr, last[seq])
        if not ptr:
            raise NativeError("llama.cpp returned no embedding")
        vectors[index] = [float(x) for x in ptr[:n_embd]]
    ctx.clear()
