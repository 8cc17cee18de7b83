"""How a Hugging Face `LlamaForCausalLM` maps onto llama.cpp's `llama` architecture.

Three things differ from a plain rename. Hugging Face applies rotary embeddings "rotate
half" style (dimension j pairs with j + head_dim/2) while llama.cpp's `llama` graph pairs
adjacent dimensions (2j, 2j+1), so the rows of the Q and K projections are permuted per
head. Llama 3.1-style `rope_scaling` becomes a `rope_freqs` tensor of per-frequency
divisors, which is how llama.cpp represents it. And `tie_word_embeddings` means there is no
output matrix: llama.cpp then reuses the token embedding.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gguf
import numpy as np
import numpy.typing as npt
from gguf import MODEL_TENSOR, TENSOR_NAMES

from ollamapy.convert.plan import OutType, PlannedTensor, add_shape, storage_dtype
from ollamapy.convert.safetensors import Checkpoint
from ollamapy.errors import BadRequestError

HF_ARCHITECTURES = ("LlamaForCausalLM",)
GGUF_ARCHITECTURE = "llama"

_GLOBAL: dict[str, MODEL_TENSOR] = {
    "model.embed_tokens": MODEL_TENSOR.TOKEN_EMBD,
    "model.norm": MODEL_TENSOR.OUTPUT_NORM,
    "lm_head": MODEL_TENSOR.OUTPUT,
}
_LAYER: dict[str, MODEL_TENSOR] = {
    "input_layernorm": MODEL_TENSOR.ATTN_NORM,
    "self_attn.q_proj": MODEL_TENSOR.ATTN_Q,
    "self_attn.k_proj": MODEL_TENSOR.ATTN_K,
    "self_attn.v_proj": MODEL_TENSOR.ATTN_V,
    "self_attn.o_proj": MODEL_TENSOR.ATTN_OUT,
    "post_attention_layernorm": MODEL_TENSOR.FFN_NORM,
    "mlp.gate_proj": MODEL_TENSOR.FFN_GATE,
    "mlp.up_proj": MODEL_TENSOR.FFN_UP,
    "mlp.down_proj": MODEL_TENSOR.FFN_DOWN,
}
_LAYER_NAME = re.compile(r"^model\.layers\.(\d+)\.(.+)\.weight$")
_DROPPED = re.compile(r"^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$")
"""A buffer old checkpoints saved; llama.cpp computes the frequencies itself."""

_NORMS = frozenset({MODEL_TENSOR.ATTN_NORM, MODEL_TENSOR.FFN_NORM, MODEL_TENSOR.OUTPUT_NORM})
_ROPE_FREQS = f"{TENSOR_NAMES[MODEL_TENSOR.ROPE_FREQS]}.weight"


@dataclass(frozen=True)
class RopeScaling:
    """`rope_scaling` in the two forms llama.cpp can reproduce exactly."""

    kind: str
    """"linear" (positions divided by `factor`) or "llama3" (per-frequency divisors)."""
    factor: float
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_context: int = 8192


@dataclass(frozen=True)
class LlamaHParams:
    """The hyper-parameters written under the `llama.` GGUF prefix."""

    n_vocab: int
    context_length: int
    n_embd: int
    n_ff: int
    n_layer: int
    n_head: int
    n_head_kv: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    rope_scaling: RopeScaling | None
    tied_embeddings: bool


def llama_hparams(config: dict[str, Any], checkpoint: Checkpoint) -> LlamaHParams:
    """Read config.json (transformers 4 or 5 layout) and check it against the checkpoint."""
    _check_supported_variant(config)
    n_embd = _positive_int(config, "hidden_size")
    n_head = _positive_int(config, "num_attention_heads")
    n_head_kv = _positive_int(config, "num_key_value_heads", default=n_head)
    head_dim = _positive_int(config, "head_dim", default=n_embd // n_head or 1)
    if n_head % n_head_kv:
        raise BadRequestError(
            f"num_attention_heads {n_head} is not a multiple of num_key_value_heads {n_head_kv}"
        )
    if head_dim % 2:
        raise BadRequestError(f"head_dim {head_dim} must be even for rotary embeddings")
    rope = _rope_parameters(config)
    return LlamaHParams(
        n_vocab=_vocab_rows(config, checkpoint),
        context_length=_positive_int(config, "max_position_embeddings"),
        n_embd=n_embd,
        n_ff=_positive_int(config, "intermediate_size"),
        n_layer=_positive_int(config, "num_hidden_layers"),
        n_head=n_head,
        n_head_kv=n_head_kv,
        head_dim=head_dim,
        rms_norm_eps=_positive_float(config, "rms_norm_eps", 1e-6),
        rope_theta=_positive_float(rope, "rope_theta", 10000.0),
        rope_scaling=_rope_scaling(rope),
        tied_embeddings=config.get("tie_word_embeddings", False) is True,
    )


def _check_supported_variant(config: dict[str, Any]) -> None:
    """llama.cpp's `llama` graph uses SiLU and (as converted here) no projection biases."""
    act = config.get("hidden_act", "silu")
    if act != "silu":
        raise BadRequestError(f"unsupported Llama hidden_act {act!r} (llama.cpp uses SiLU)")
    for key in ("attention_bias", "mlp_bias"):
        if config.get(key):
            raise BadRequestError(f"Llama models with {key} are not supported yet")


def _rope_parameters(config: dict[str, Any]) -> dict[str, Any]:
    """RoPE settings: transformers 5 nests them in `rope_parameters`, 4 keeps them on top."""
    nested = config.get("rope_parameters")
    if isinstance(nested, dict):
        return nested
    scaling = config.get("rope_scaling") or {}
    if not isinstance(scaling, dict):
        raise BadRequestError("config.json: rope_scaling must be an object or null")
    merged = dict(scaling)
    if "rope_theta" in config:
        merged["rope_theta"] = config["rope_theta"]
    return merged


def _rope_scaling(rope: dict[str, Any]) -> RopeScaling | None:
    """Linear and llama3 scaling; any other kind is refused rather than approximated."""
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind in (None, "default"):
        return None
    if kind == "linear":
        return RopeScaling("linear", _positive_float(rope, "factor"))
    if kind == "llama3":
        return RopeScaling(
            "llama3",
            _positive_float(rope, "factor"),
            _positive_float(rope, "low_freq_factor"),
            _positive_float(rope, "high_freq_factor"),
            _positive_int(rope, "original_max_position_embeddings"),
        )
    raise BadRequestError(
        f"unsupported rope_scaling type {kind!r}: only 'linear' and 'llama3' can be converted"
    )


def _positive_int(config: dict[str, Any], key: str, default: int | None = None) -> int:
    """A required (or defaulted) positive integer from config.json; null counts as absent
    (configs write `"head_dim": null` to mean hidden_size / num_attention_heads)."""
    value = config.get(key)
    if value is None:
        value = default
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise BadRequestError(f"config.json: {key} must be a positive integer, got {value!r}")
    return value


def _positive_float(config: dict[str, Any], key: str, default: float | None = None) -> float:
    """A required (or defaulted) positive number from config.json."""
    value = config.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
        raise BadRequestError(f"config.json: {key} must be a positive number, got {value!r}")
    return float(value)


def _vocab_rows(config: dict[str, Any], checkpoint: Checkpoint) -> int:
    """Vocabulary size as the checkpoint embeds it, which config.json must agree with."""
    info = checkpoint.get("model.embed_tokens.weight")
    if info is None or len(info.shape) != 2:
        raise BadRequestError("missing tensor model.embed_tokens.weight")
    declared = config.get("vocab_size", info.shape[0])
    if declared != info.shape[0]:
        raise BadRequestError(
            f"config.json: vocab_size {declared!r} but the embedding has {info.shape[0]} rows"
        )
    return info.shape[0]


# --------------------------------------------------------------------------- tensors


def gguf_tensor_name(hf_name: str) -> str | None:
    """The GGUF name for a checkpoint tensor, or None when it is deliberately dropped."""
    if _DROPPED.match(hf_name):
        return None
    module = hf_name.removesuffix(".weight")
    if module in _GLOBAL and module != hf_name:
        return f"{TENSOR_NAMES[_GLOBAL[module]]}.weight"
    if (match := _LAYER_NAME.match(hf_name)) and match.group(2) in _LAYER:
        stem = TENSOR_NAMES[_LAYER[match.group(2)]].format(bid=int(match.group(1)))
        return f"{stem}.weight"
    raise BadRequestError(f"unexpected tensor {hf_name!r} in a LlamaForCausalLM checkpoint")


def required_tensors(hp: LlamaHParams) -> list[str]:
    """Every checkpoint-backed GGUF tensor llama.cpp's `llama` graph loads, in file order."""
    names = [f"{TENSOR_NAMES[MODEL_TENSOR.TOKEN_EMBD]}.weight"]
    for block in range(hp.n_layer):
        names += [f"{TENSOR_NAMES[k].format(bid=block)}.weight" for k in _LAYER.values()]
    names.append(f"{TENSOR_NAMES[MODEL_TENSOR.OUTPUT_NORM]}.weight")
    if not hp.tied_embeddings:
        names.append(f"{TENSOR_NAMES[MODEL_TENSOR.OUTPUT]}.weight")
    return names


def expected_shape(gguf_name: str, hp: LlamaHParams) -> tuple[int, ...]:
    """The numpy (row-major, HF) shape each tensor must have for these hyper-parameters."""
    q, kv = hp.n_head * hp.head_dim, hp.n_head_kv * hp.head_dim
    shapes = {
        MODEL_TENSOR.TOKEN_EMBD: (hp.n_vocab, hp.n_embd),
        MODEL_TENSOR.OUTPUT: (hp.n_vocab, hp.n_embd),
        MODEL_TENSOR.ATTN_Q: (q, hp.n_embd),
        MODEL_TENSOR.ATTN_K: (kv, hp.n_embd),
        MODEL_TENSOR.ATTN_V: (kv, hp.n_embd),
        MODEL_TENSOR.ATTN_OUT: (hp.n_embd, q),
        MODEL_TENSOR.FFN_GATE: (hp.n_ff, hp.n_embd),
        MODEL_TENSOR.FFN_UP: (hp.n_ff, hp.n_embd),
        MODEL_TENSOR.FFN_DOWN: (hp.n_embd, hp.n_ff),
    }
    kind = tensor_kind(gguf_name)
    return (hp.n_embd,) if kind in _NORMS else shapes[kind]


def tensor_kind(gguf_name: str) -> MODEL_TENSOR:
    """Which MODEL_TENSOR a GGUF name (from `gguf_tensor_name`) belongs to."""
    base = re.sub(r"^blk\.\d+\.", "blk.{bid}.", gguf_name.removesuffix(".weight"))
    return next(kind for kind, template in TENSOR_NAMES.items() if template == base)


def plan_tensors(
    checkpoint: Checkpoint, hp: LlamaHParams, out_type: OutType
) -> list[PlannedTensor]:
    """Map and shape-check every tensor, report the first missing or unexpected one."""
    sources = _sources(checkpoint, hp)
    required = required_tensors(hp)
    if missing := [n for n in required if n not in sources]:
        raise BadRequestError(
            f"checkpoint is missing {len(missing)} tensor(s), e.g. {missing[0]!r}"
        )
    if extra := sorted(set(sources) - set(required)):
        raise BadRequestError(f"tensor {sources[extra[0]]!r} is beyond num_hidden_layers")
    plan = [_plan_one(name, sources[name], checkpoint, hp, out_type) for name in required]
    if hp.rope_scaling is not None and hp.rope_scaling.kind == "llama3":
        factors = llama3_rope_factors(hp.rope_theta, hp.head_dim, hp.rope_scaling)
        plan.insert(0, PlannedTensor(_ROPE_FREQS, factors.shape, factors.dtype, lambda: factors))
    return plan


def _sources(checkpoint: Checkpoint, hp: LlamaHParams) -> dict[str, str]:
    """GGUF name → checkpoint name; a tied model's redundant `lm_head` copy is skipped."""
    sources: dict[str, str] = {}
    for hf_name in checkpoint:
        gguf_name = gguf_tensor_name(hf_name)
        if gguf_name is None or (hp.tied_embeddings and hf_name == "lm_head.weight"):
            continue
        sources[gguf_name] = hf_name
    return sources


def _plan_one(
    gguf_name: str, hf_name: str, checkpoint: Checkpoint, hp: LlamaHParams, out_type: OutType
) -> PlannedTensor:
    """Check one tensor's shape and dtype, pick its storage type and its transformation."""
    info = checkpoint[hf_name]
    want = expected_shape(gguf_name, hp)
    if info.shape != want:
        raise BadRequestError(
            f"tensor {hf_name!r} has shape {list(info.shape)}, expected {list(want)}"
        )
    if info.dtype not in ("F32", "F16", "BF16", "F64"):
        raise BadRequestError(f"tensor {hf_name!r} has non-float dtype {info.dtype}")
    kind = tensor_kind(gguf_name)
    dtype = storage_dtype(want, out_type, keep_f32=kind in _NORMS)
    heads = {MODEL_TENSOR.ATTN_Q: hp.n_head, MODEL_TENSOR.ATTN_K: hp.n_head_kv}.get(kind)
    return PlannedTensor(gguf_name, want, dtype, _reader(checkpoint, hf_name, heads))


def _reader(
    checkpoint: Checkpoint, hf_name: str, n_heads: int | None
) -> Callable[[], npt.NDArray[Any]]:
    """Read a tensor; Q and K (those with `n_heads`) are permuted for llama.cpp's RoPE."""

    def read() -> npt.NDArray[Any]:
        data = checkpoint.load(hf_name)
        return data if n_heads is None else interleave_rope_rows(data, n_heads)

    return read


def interleave_rope_rows(weight: npt.NDArray[Any], n_heads: int) -> npt.NDArray[Any]:
    """Reorder each head's rows from HF's rotate-half layout to adjacent pairs.

    Within a head of size d, HF rotates row j together with row j + d/2; llama.cpp's normal
    RoPE rotates rows 2j and 2j+1. So new row 2j+k is old row k*d/2 + j.
    """
    rows, cols = weight.shape
    half = rows // n_heads // 2
    return weight.reshape(n_heads, 2, half, cols).swapaxes(1, 2).reshape(rows, cols)


def llama3_rope_factors(
    theta: float, head_dim: int, scaling: RopeScaling
) -> npt.NDArray[np.float32]:
    """Per-frequency divisors that turn plain RoPE into Llama 3.1's scaled RoPE.

    Transformers scales each inverse frequency: long wavelengths (beyond the original
    context / low_freq_factor) are divided by `factor`, short ones (below original context /
    high_freq_factor) kept, and those between blended smoothly. llama.cpp divides each
    frequency by `rope_freqs[i]`, so the tensor holds original / scaled.
    """
    inv_freq = theta ** -(np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    wavelen = 2 * math.pi / inv_freq
    old = scaling.original_context
    low, high = scaling.low_freq_factor, scaling.high_freq_factor
    smooth = (old / wavelen - low) / (high - low) if high != low else np.zeros_like(wavelen)
    blended = (1 - smooth) * inv_freq / scaling.factor + smooth * inv_freq
    scaled = np.where(wavelen > old / low, inv_freq / scaling.factor, inv_freq)
    scaled = np.where((wavelen >= old / high) & (wavelen <= old / low), blended, scaled)
    return (inv_freq / scaled).astype(np.float32)


def add_hparams(writer: gguf.GGUFWriter, hp: LlamaHParams) -> None:
    """The `llama.*` key/values, as llama.cpp's loader reads them."""
    writer.add_vocab_size(hp.n_vocab)
    add_shape(writer, hp)
    writer.add_head_count_kv(hp.n_head_kv)
    if hp.head_dim * hp.n_head != hp.n_embd:
        writer.add_key_length(hp.head_dim)
        writer.add_value_length(hp.head_dim)
    writer.add_layer_norm_rms_eps(hp.rms_norm_eps)
    writer.add_rope_freq_base(hp.rope_theta)
    writer.add_rope_dimension_count(hp.head_dim)
    if hp.rope_scaling is not None and hp.rope_scaling.kind == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(hp.rope_scaling.factor)
