"""How a Hugging Face `BertModel` maps onto llama.cpp's `bert` architecture.

Two things live here: the tensor-name table (HF module paths → GGUF names, with the pooler
and bookkeeping buffers dropped because llama.cpp does its own pooling) and the
hyper-parameters, read from config.json and checked against the actual tensor shapes so an
inconsistent directory fails at conversion time rather than when llama.cpp loads it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gguf import MODEL_TENSOR, TENSOR_NAMES

from ollamapy.convert.hf import SentenceTransformersInfo
from ollamapy.convert.safetensors import Checkpoint
from ollamapy.errors import BadRequestError

HF_ARCHITECTURES = ("BertModel",)
GGUF_ARCHITECTURE = "bert"

_EMBEDDINGS: dict[str, MODEL_TENSOR] = {
    "embeddings.word_embeddings": MODEL_TENSOR.TOKEN_EMBD,
    "embeddings.position_embeddings": MODEL_TENSOR.POS_EMBD,
    "embeddings.token_type_embeddings": MODEL_TENSOR.TOKEN_TYPES,
}
_EMBEDDING_NORM = ("embeddings.LayerNorm", MODEL_TENSOR.TOKEN_EMBD_NORM)

_LAYER_LINEAR: dict[str, MODEL_TENSOR] = {
    "attention.self.query": MODEL_TENSOR.ATTN_Q,
    "attention.self.key": MODEL_TENSOR.ATTN_K,
    "attention.self.value": MODEL_TENSOR.ATTN_V,
    "attention.output.dense": MODEL_TENSOR.ATTN_OUT,
    "intermediate.dense": MODEL_TENSOR.FFN_UP,
    "output.dense": MODEL_TENSOR.FFN_DOWN,
}
_LAYER_NORMS: dict[str, MODEL_TENSOR] = {
    "attention.output.LayerNorm": MODEL_TENSOR.ATTN_OUT_NORM,
    "output.LayerNorm": MODEL_TENSOR.LAYER_OUT_NORM,
}

_DROPPED = re.compile(r"^(embeddings\.position_ids|pooler\..*|cls\..*)$")
"""Not needed for embeddings: the HF pooler/MLM heads and the position-id buffer."""

_LAYER = re.compile(r"^encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$")
_LEGACY_SUFFIX = {".gamma": ".weight", ".beta": ".bias"}
"""Very old BERT checkpoints name LayerNorm parameters gamma/beta."""

FLOAT32_ONLY = frozenset({MODEL_TENSOR.POS_EMBD, MODEL_TENSOR.TOKEN_TYPES})
"""Kept in f32 even in an f16 file, as llama.cpp's own converter does."""


def canonical_name(hf_name: str) -> str:
    """Strip the `bert.` prefix of *ForXxx checkpoints and modernise gamma/beta names."""
    name = hf_name.removeprefix("bert.")
    for old, new in _LEGACY_SUFFIX.items():
        if name.endswith(old):
            name = name[: -len(old)] + new
    return name


def gguf_tensor_name(hf_name: str) -> str | None:
    """The GGUF name for a checkpoint tensor, or None when it is deliberately dropped."""
    name = canonical_name(hf_name)
    if _DROPPED.match(name):
        return None
    module, _, param = name.rpartition(".")
    if param in ("weight", "bias"):
        if module in _EMBEDDINGS and param == "weight":
            return f"{TENSOR_NAMES[_EMBEDDINGS[module]]}.weight"
        if module == _EMBEDDING_NORM[0]:
            return f"{TENSOR_NAMES[_EMBEDDING_NORM[1]]}.{param}"
        if match := _LAYER.match(name):
            block, sub = int(match.group(1)), match.group(2)
            kind = _LAYER_LINEAR.get(sub) or _LAYER_NORMS.get(sub)
            if kind is not None:
                return f"{TENSOR_NAMES[kind].format(bid=block)}.{param}"
    raise BadRequestError(f"unexpected tensor {hf_name!r} in a BertModel checkpoint")


def tensor_kind(gguf_name: str) -> MODEL_TENSOR | None:
    """Which MODEL_TENSOR a GGUF name belongs to (used to pick its storage type)."""
    base = re.sub(r"^blk\.\d+\.", "blk.{bid}.", gguf_name.rsplit(".", 1)[0])
    for kind, template in TENSOR_NAMES.items():
        if template == base:
            return kind
    return None


def required_tensors(n_layer: int) -> list[str]:
    """Every GGUF tensor llama.cpp's BERT graph loads, for a model with `n_layer` blocks."""
    names = [f"{TENSOR_NAMES[kind]}.weight" for kind in _EMBEDDINGS.values()]
    names += [f"{TENSOR_NAMES[_EMBEDDING_NORM[1]]}.{p}" for p in ("weight", "bias")]
    for block in range(n_layer):
        for kind in (*_LAYER_LINEAR.values(), *_LAYER_NORMS.values()):
            stem = TENSOR_NAMES[kind].format(bid=block)
            names += [f"{stem}.weight", f"{stem}.bias"]
    return names


@dataclass(frozen=True)
class BertHParams:
    """The hyper-parameters written under the `bert.` GGUF prefix."""

    n_vocab: int
    context_length: int
    n_positions: int
    n_embd: int
    n_ff: int
    n_layer: int
    n_head: int
    layer_norm_eps: float
    type_vocab_size: int
    pooling: str | None


def bert_hparams(
    config: dict[str, Any], st_info: SentenceTransformersInfo, checkpoint: Checkpoint
) -> BertHParams:
    """Read config.json, prefer sentence-transformers' max_seq_length, check tensor shapes."""
    _check_supported_variant(config)
    n_positions = _positive_int(config, "max_position_embeddings")
    context = st_info.max_seq_length or n_positions
    hp = BertHParams(
        n_vocab=_word_embedding_rows(checkpoint),
        context_length=min(context, n_positions),
        n_positions=n_positions,
        n_embd=_positive_int(config, "hidden_size"),
        n_ff=_positive_int(config, "intermediate_size"),
        n_layer=_positive_int(config, "num_hidden_layers"),
        n_head=_positive_int(config, "num_attention_heads"),
        layer_norm_eps=float(config.get("layer_norm_eps", 1e-12)),
        type_vocab_size=int(config.get("type_vocab_size", 2)),
        pooling=st_info.pooling,
    )
    if hp.n_embd % hp.n_head:
        raise BadRequestError(
            f"hidden_size {hp.n_embd} is not divisible by num_attention_heads {hp.n_head}"
        )
    return hp


def _check_supported_variant(config: dict[str, Any]) -> None:
    """llama.cpp's BERT graph has absolute positions and GELU; refuse anything else."""
    position = config.get("position_embedding_type", "absolute")
    if position != "absolute":
        raise BadRequestError(f"unsupported BERT position_embedding_type {position!r}")
    act = config.get("hidden_act", "gelu")
    if act not in ("gelu", "gelu_new", "gelu_pytorch_tanh"):
        raise BadRequestError(f"unsupported BERT hidden_act {act!r} (llama.cpp uses GELU)")


def _positive_int(config: dict[str, Any], key: str) -> int:
    """A required positive integer from config.json."""
    value = config.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise BadRequestError(f"config.json: {key} must be a positive integer, got {value!r}")
    return value


def _word_embedding_rows(checkpoint: Checkpoint) -> int:
    """Vocabulary size as the checkpoint actually embeds it."""
    for name, info in checkpoint.items():
        if canonical_name(name) == "embeddings.word_embeddings.weight" and len(info.shape) == 2:
            return info.shape[0]
    raise BadRequestError("missing tensor embeddings.word_embeddings.weight")


def expected_shape(gguf_name: str, hp: BertHParams) -> tuple[int, ...]:
    """The numpy (row-major, HF) shape each tensor must have for these hyper-parameters."""
    kind = tensor_kind(gguf_name)
    is_bias = gguf_name.endswith(".bias")
    shapes: dict[MODEL_TENSOR | None, tuple[int, ...]] = {
        MODEL_TENSOR.TOKEN_EMBD: (hp.n_vocab, hp.n_embd),
        MODEL_TENSOR.POS_EMBD: (hp.n_positions, hp.n_embd),
        MODEL_TENSOR.TOKEN_TYPES: (hp.type_vocab_size, hp.n_embd),
        MODEL_TENSOR.FFN_UP: (hp.n_ff,) if is_bias else (hp.n_ff, hp.n_embd),
        MODEL_TENSOR.FFN_DOWN: (hp.n_embd,) if is_bias else (hp.n_embd, hp.n_ff),
    }
    square = (hp.n_embd,) if is_bias else (hp.n_embd, hp.n_embd)
    return shapes.get(kind, (hp.n_embd,) if kind in _NORM_KINDS else square)


_NORM_KINDS = frozenset({_EMBEDDING_NORM[1], *_LAYER_NORMS.values()})
