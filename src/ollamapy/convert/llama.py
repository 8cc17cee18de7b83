"""How a Hugging Face `LlamaForCausalLM` maps onto llama.cpp's `llama` architecture, and the
table-driven pieces its relatives (Qwen2, Qwen3: see `qwen.py`) share with it.

Three things differ from a plain rename. Hugging Face applies rotary embeddings "rotate
half" style (dimension j pairs with j + head_dim/2) while llama.cpp's `llama` graph pairs
adjacent dimensions (2j, 2j+1), so the rows of the Q and K projections are permuted per
head (architectures whose llama.cpp graph uses NEOX RoPE, like Qwen's, need no permutation).
Llama 3.1-style `rope_scaling` becomes a `rope_freqs` tensor of per-frequency divisors,
which is how llama.cpp represents it. And `tie_word_embeddings` means there is no output
matrix: llama.cpp then reuses the token embedding.

What differs between family members is data, a `DecoderSpec`: which per-layer tensors the
checkpoint has (biases, Q/K norms), whether Q/K are permuted, which RoPE scalings can be
reproduced, and which config flags are refused.
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
    "model.embed_tokens.weight": MODEL_TENSOR.TOKEN_EMBD,
    "model.norm.weight": MODEL_TENSOR.OUTPUT_NORM,
    "lm_head.weight": MODEL_TENSOR.OUTPUT,
}
LayerTensors = dict[str, tuple[MODEL_TENSOR, str]]
"""Checkpoint name inside `model.layers.N.` → (GGUF tensor kind, "weight" or "bias"), in the
order the tensors are written."""

LLAMA_LAYER: LayerTensors = {
    "input_layernorm.weight": (MODEL_TENSOR.ATTN_NORM, "weight"),
    "self_attn.q_proj.weight": (MODEL_TENSOR.ATTN_Q, "weight"),
    "self_attn.k_proj.weight": (MODEL_TENSOR.ATTN_K, "weight"),
    "self_attn.v_proj.weight": (MODEL_TENSOR.ATTN_V, "weight"),
    "self_attn.o_proj.weight": (MODEL_TENSOR.ATTN_OUT, "weight"),
    "post_attention_layernorm.weight": (MODEL_TENSOR.FFN_NORM, "weight"),
    "mlp.gate_proj.weight": (MODEL_TENSOR.FFN_GATE, "weight"),
    "mlp.up_proj.weight": (MODEL_TENSOR.FFN_UP, "weight"),
    "mlp.down_proj.weight": (MODEL_TENSOR.FFN_DOWN, "weight"),
}
_LAYER_NAME = re.compile(r"^model\.layers\.(\d+)\.(.+)$")
_DROPPED = re.compile(r"^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$")
"""A buffer old checkpoints saved; llama.cpp computes the frequencies itself."""

_NORMS = frozenset({MODEL_TENSOR.ATTN_NORM, MODEL_TENSOR.FFN_NORM, MODEL_TENSOR.OUTPUT_NORM})
_HEAD_NORMS = frozenset({MODEL_TENSOR.ATTN_Q_NORM, MODEL_TENSOR.ATTN_K_NORM})
_ROPE_FREQS = f"{TENSOR_NAMES[MODEL_TENSOR.ROPE_FREQS]}.weight"


@dataclass(frozen=True)
class DecoderSpec:
    """One Llama-like architecture: the facts that differ between family members."""

    name: str
    """Family name for error messages ("Llama", "Qwen2")."""
    hf_architecture: str
    gguf_architecture: str
    layer: LayerTensors
    permute_qk: bool
    """True when llama.cpp's graph uses normal (adjacent-pair) RoPE, which HF's
    rotate-half weights must be permuted for; False for NEOX-RoPE graphs."""
    rope_types: tuple[str, ...]
    """The `rope_scaling` kinds llama.cpp's graph for it reproduces exactly."""
    refused_flags: tuple[str, ...]
    """config.json flags that, when true, add tensors the llama.cpp graph does not use."""
    free_head_dim: bool
    """Whether the llama.cpp graph allows head_dim != hidden_size / num_attention_heads."""
    activations: tuple[str, ...] = ("silu",)
    """`hidden_act` values meaning the gated activation llama.cpp's graph applies; the first
    is transformers' default when config.json names none."""
    norm_offset: float = 0.0
    """Added to every RMSNorm weight: Gemma's HF norm multiplies by (1 + weight), llama.cpp's
    by the weight itself."""
    tied_only: bool = False
    """The llama.cpp graph never loads an output matrix, so untied embeddings are refused."""
    window_always_applies: bool = False
    """config.json's `sliding_window` applies to every layer whenever it is set (Mistral has
    no `use_sliding_window` or `layer_types` switch)."""
    fused_gate_up: bool = False
    """The checkpoint's gate and up projections are one matrix, gate rows first (Phi-3's
    `gate_up_proj`); llama.cpp's graph loads it as `ffn_up` with 2 * n_ff rows and splits it
    itself, so it is written whole."""


LLAMA = DecoderSpec(
    name="Llama",
    hf_architecture="LlamaForCausalLM",
    gguf_architecture=GGUF_ARCHITECTURE,
    layer=LLAMA_LAYER,
    permute_qk=True,
    rope_types=("linear", "llama3"),
    refused_flags=("attention_bias", "mlp_bias"),
    free_head_dim=True,
)


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
    """The hyper-parameters written under the `<arch>.` GGUF prefix."""

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


def llama_hparams(
    config: dict[str, Any], checkpoint: Checkpoint, spec: DecoderSpec = LLAMA
) -> LlamaHParams:
    """Read config.json (transformers 4 or 5 layout) and check it against the checkpoint."""
    _check_supported_variant(config, spec)
    n_embd = _positive_int(config, "hidden_size")
    n_head = _positive_int(config, "num_attention_heads")
    n_head_kv = _positive_int(config, "num_key_value_heads", default=n_head)
    head_dim = _positive_int(config, "head_dim", default=n_embd // n_head or 1)
    n_layer = _positive_int(config, "num_hidden_layers")
    _check_heads(spec, n_embd, n_head, n_head_kv, head_dim)
    _check_sliding_window(config, spec, n_layer)
    rope = _rope_parameters(config)
    _check_full_rotary(config, rope, spec)
    return LlamaHParams(
        n_vocab=_vocab_rows(config, checkpoint),
        context_length=_context_length(config, spec),
        n_embd=n_embd,
        n_ff=_positive_int(config, "intermediate_size"),
        n_layer=n_layer,
        n_head=n_head,
        n_head_kv=n_head_kv,
        head_dim=head_dim,
        rms_norm_eps=_positive_float(config, "rms_norm_eps", 1e-6),
        rope_theta=_positive_float(rope, "rope_theta", 10000.0),
        rope_scaling=_rope_scaling(rope, spec),
        tied_embeddings=spec.tied_only or config.get("tie_word_embeddings", False) is True,
    )


def _check_supported_variant(config: dict[str, Any], spec: DecoderSpec) -> None:
    """llama.cpp's graph for the spec uses one fixed activation, none of the spec's refused
    extras and, for tied-only graphs, the token embedding as output matrix."""
    act = config.get("hidden_act") or spec.activations[0]
    if act not in spec.activations:
        raise BadRequestError(
            f"unsupported {spec.name} hidden_act {act!r} (llama.cpp's "
            f"{spec.gguf_architecture} graph uses {spec.activations[0]})"
        )
    for key in spec.refused_flags:
        if config.get(key):
            raise BadRequestError(f"{spec.name} models with {key} are not supported yet")
    if spec.tied_only and config.get("tie_word_embeddings", True) is not True:
        raise BadRequestError(
            f"{spec.name} models with tie_word_embeddings false are not supported "
            f"(llama.cpp's {spec.gguf_architecture} graph reuses the token embedding as output)"
        )


def _check_heads(
    spec: DecoderSpec, n_embd: int, n_head: int, n_head_kv: int, head_dim: int
) -> None:
    """Grouped-query attention needs whole groups; RoPE needs an even head size."""
    if n_head % n_head_kv:
        raise BadRequestError(
            f"num_attention_heads {n_head} is not a multiple of num_key_value_heads {n_head_kv}"
        )
    if head_dim % 2:
        raise BadRequestError(f"head_dim {head_dim} must be even for rotary embeddings")
    if not spec.free_head_dim and head_dim * n_head != n_embd:
        raise BadRequestError(
            f"{spec.name} models with head_dim {head_dim} != hidden_size / num_attention_heads "
            f"are not supported (llama.cpp's {spec.gguf_architecture} graph has no separate "
            "head size)"
        )


def _check_sliding_window(config: dict[str, Any], spec: DecoderSpec, n_layer: int) -> None:
    """Refuse sliding-window attention when some layer really uses it: llama.cpp's graphs
    for this family attend to the whole context, so its outputs would differ.

    transformers 5 lists each layer's kind in `layer_types`; older configs imply it from
    `use_sliding_window` and `max_window_layers` (layers from that index on slide)."""
    types = config.get("layer_types")
    if isinstance(types, list):
        in_use = any(kind != "full_attention" for kind in types)
    else:
        first = config.get("max_window_layers", 0)
        in_use = bool(config.get("use_sliding_window")) and (
            not isinstance(first, int) or first < n_layer
        )
    if in_use:
        raise BadRequestError(
            f"{spec.name} models with sliding-window attention in use are not supported "
            f"(llama.cpp's {spec.gguf_architecture} graph attends to the whole context)"
        )


def _context_length(config: dict[str, Any], spec: DecoderSpec) -> int:
    """The model's context, cut to its `sliding_window` where one applies to every layer.

    llama.cpp's graph for these families attends to the whole context, while transformers
    masks keys more than `sliding_window` positions back. The two agree exactly while a
    sequence is no longer than the window, so the converted model's context stops there
    (Mistral 7B v0.1: 4096 of 32768; Phi-3-mini-4k: 2047 of 4096) rather than being
    refused or silently computing something else beyond it."""
    context = _positive_int(config, "max_position_embeddings")
    window = config.get("sliding_window") if spec.window_always_applies else None
    if window is None:
        return context
    if not isinstance(window, int) or isinstance(window, bool) or window < 1:
        raise BadRequestError(
            f"config.json: sliding_window must be a positive integer, not {window!r}"
        )
    return min(context, window)


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


def _check_full_rotary(config: dict[str, Any], rope: dict[str, Any], spec: DecoderSpec) -> None:
    """Rotary embeddings over only part of each head are refused: the GGUF's
    `rope.dimension_count` is written as the whole head. transformers 5 keeps the factor in
    `rope_parameters`, 4 on top of config.json."""
    factor = rope.get("partial_rotary_factor", config.get("partial_rotary_factor", 1.0))
    if factor not in (None, 1, 1.0):
        raise BadRequestError(
            f"{spec.name} models with partial_rotary_factor {factor!r} are not supported "
            "(rotary embeddings over part of each head)"
        )


def _rope_scaling(rope: dict[str, Any], spec: DecoderSpec) -> RopeScaling | None:
    """The spec's exactly reproducible scalings; any other kind is refused, not approximated."""
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind in (None, "default"):
        return None
    if kind not in spec.rope_types:
        allowed = " and ".join(repr(k) for k in spec.rope_types) or "no scaling"
        raise BadRequestError(
            f"unsupported rope_scaling type {kind!r}: only {allowed} can be converted "
            f"for {spec.hf_architecture}"
        )
    if kind == "linear":
        return RopeScaling("linear", _positive_float(rope, "factor"))
    return RopeScaling(
        "llama3",
        _positive_float(rope, "factor"),
        _positive_float(rope, "low_freq_factor"),
        _positive_float(rope, "high_freq_factor"),
        _positive_int(rope, "original_max_position_embeddings"),
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


def gguf_tensor_name(hf_name: str, spec: DecoderSpec = LLAMA) -> str | None:
    """The GGUF name for a checkpoint tensor, or None when it is deliberately dropped."""
    if _DROPPED.match(hf_name):
        return None
    if hf_name in _GLOBAL:
        return _gguf_name(_GLOBAL[hf_name], "weight")
    if (match := _LAYER_NAME.match(hf_name)) and match.group(2) in spec.layer:
        kind, param = spec.layer[match.group(2)]
        return _gguf_name(kind, param, int(match.group(1)))
    raise BadRequestError(f"unexpected tensor {hf_name!r} in a {spec.hf_architecture} checkpoint")


def _gguf_name(kind: MODEL_TENSOR, param: str, block: int | None = None) -> str:
    return f"{TENSOR_NAMES[kind].format(bid=block)}.{param}"


def required_tensors(hp: LlamaHParams, spec: DecoderSpec = LLAMA) -> list[str]:
    """Every checkpoint-backed GGUF tensor llama.cpp's graph loads, in file order."""
    names = [_gguf_name(MODEL_TENSOR.TOKEN_EMBD, "weight")]
    for block in range(hp.n_layer):
        names += [_gguf_name(kind, param, block) for kind, param in spec.layer.values()]
    names.append(_gguf_name(MODEL_TENSOR.OUTPUT_NORM, "weight"))
    if not hp.tied_embeddings:
        names.append(_gguf_name(MODEL_TENSOR.OUTPUT, "weight"))
    return names


def expected_shape(gguf_name: str, hp: LlamaHParams, spec: DecoderSpec = LLAMA) -> tuple[int, ...]:
    """The numpy (row-major, HF) shape each tensor must have for these hyper-parameters;
    a bias has one entry per row of its weight. A fused QKV matrix stacks Q, K and V rows;
    a fused gate/up matrix has the gate's and the up projection's rows."""
    q, kv = hp.n_head * hp.head_dim, hp.n_head_kv * hp.head_dim
    up_rows = 2 * hp.n_ff if spec.fused_gate_up else hp.n_ff
    shapes = {
        MODEL_TENSOR.TOKEN_EMBD: (hp.n_vocab, hp.n_embd),
        MODEL_TENSOR.OUTPUT: (hp.n_vocab, hp.n_embd),
        MODEL_TENSOR.ATTN_Q: (q, hp.n_embd),
        MODEL_TENSOR.ATTN_K: (kv, hp.n_embd),
        MODEL_TENSOR.ATTN_V: (kv, hp.n_embd),
        MODEL_TENSOR.ATTN_QKV: (q + 2 * kv, hp.n_embd),
        MODEL_TENSOR.ATTN_OUT: (hp.n_embd, q),
        MODEL_TENSOR.FFN_GATE: (hp.n_ff, hp.n_embd),
        MODEL_TENSOR.FFN_UP: (up_rows, hp.n_embd),
        MODEL_TENSOR.FFN_DOWN: (hp.n_embd, hp.n_ff),
    }
    kind = tensor_kind(gguf_name)
    if kind in _NORMS:
        return (hp.n_embd,)
    if kind in _HEAD_NORMS:
        return (hp.head_dim,)
    return shapes[kind][:1] if gguf_name.endswith(".bias") else shapes[kind]


def tensor_kind(gguf_name: str) -> MODEL_TENSOR:
    """Which MODEL_TENSOR a GGUF name (from `gguf_tensor_name`) belongs to."""
    stem = gguf_name.removesuffix(".weight").removesuffix(".bias")
    base = re.sub(r"^blk\.\d+\.", "blk.{bid}.", stem)
    return next(kind for kind, template in TENSOR_NAMES.items() if template == base)


def plan_tensors(
    checkpoint: Checkpoint, hp: LlamaHParams, out_type: OutType, spec: DecoderSpec = LLAMA
) -> list[PlannedTensor]:
    """Map and shape-check every tensor, report the first missing or unexpected one."""
    sources = _sources(checkpoint, hp, spec)
    required = required_tensors(hp, spec)
    if missing := [n for n in required if n not in sources]:
        raise BadRequestError(
            f"checkpoint is missing {len(missing)} tensor(s), e.g. {missing[0]!r}"
        )
    if extra := sorted(set(sources) - set(required)):
        raise BadRequestError(f"tensor {sources[extra[0]]!r} is beyond num_hidden_layers")
    plan = [_plan_one(n, sources[n], checkpoint, hp, out_type, spec) for n in required]
    if hp.rope_scaling is not None and hp.rope_scaling.kind == "llama3":
        factors = llama3_rope_factors(hp.rope_theta, hp.head_dim, hp.rope_scaling)
        plan.insert(0, PlannedTensor(_ROPE_FREQS, factors.shape, factors.dtype, lambda: factors))
    return plan


def _sources(checkpoint: Checkpoint, hp: LlamaHParams, spec: DecoderSpec) -> dict[str, str]:
    """GGUF name → checkpoint name; a tied model's redundant `lm_head` copy is skipped."""
    sources: dict[str, str] = {}
    for hf_name in checkpoint:
        gguf_name = gguf_tensor_name(hf_name, spec)
        if gguf_name is None or (hp.tied_embeddings and hf_name == "lm_head.weight"):
            continue
        sources[gguf_name] = hf_name
    return sources


def _plan_one(
    gguf_name: str,
    hf_name: str,
    checkpoint: Checkpoint,
    hp: LlamaHParams,
    out_type: OutType,
    spec: DecoderSpec,
) -> PlannedTensor:
    """Check one tensor's shape and dtype, pick its storage type and its transformation."""
    info = checkpoint[hf_name]
    want = expected_shape(gguf_name, hp, spec)
    if info.shape != want:
        raise BadRequestError(
            f"tensor {hf_name!r} has shape {list(info.shape)}, expected {list(want)}"
        )
    if info.dtype not in ("F32", "F16", "BF16", "F64"):
        raise BadRequestError(f"tensor {hf_name!r} has non-float dtype {info.dtype}")
    kind = tensor_kind(gguf_name)
    dtype = storage_dtype(want, out_type, keep_f32=kind in _NORMS | _HEAD_NORMS)
    heads = _permuted_heads(kind, hp) if spec.permute_qk else None
    offset = spec.norm_offset if kind in _NORMS else 0.0
    return PlannedTensor(gguf_name, want, dtype, _reader(checkpoint, hf_name, heads, offset))


def _permuted_heads(kind: MODEL_TENSOR, hp: LlamaHParams) -> int | None:
    """How many heads a tensor's rows are permuted in: Q and K only (their biases too)."""
    return {MODEL_TENSOR.ATTN_Q: hp.n_head, MODEL_TENSOR.ATTN_K: hp.n_head_kv}.get(kind)


def _reader(
    checkpoint: Checkpoint, hf_name: str, n_heads: int | None, offset: float = 0.0
) -> Callable[[], npt.NDArray[Any]]:
    """Read a tensor; Q and K (those with `n_heads`) are permuted for llama.cpp's RoPE, and
    `offset` is added (in float32) to norm weights whose HF norm scales by 1 + weight."""

    def read() -> npt.NDArray[Any]:
        data = checkpoint.load(hf_name)
        if offset:
            data = data.astype(np.float32) + np.float32(offset)
        return data if n_heads is None else interleave_rope_rows(data, n_heads)

    return read


def interleave_rope_rows(weight: npt.NDArray[Any], n_heads: int) -> npt.NDArray[Any]:
    """Reorder each head's rows from HF's rotate-half layout to adjacent pairs.

    Within a head of size d, HF rotates row j together with row j + d/2; llama.cpp's normal
    RoPE rotates rows 2j and 2j+1. So new row 2j+k is old row k*d/2 + j. A 1-D bias is
    reordered the same way.
    """
    rows = weight.shape[0]
    half = rows // n_heads // 2
    rest = weight.shape[1:]
    return weight.reshape(n_heads, 2, half, *rest).swapaxes(1, 2).reshape(weight.shape)


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
    """The `<arch>.*` key/values, as llama.cpp's loaders for this family read them; the key
    and value lengths only when the head size is not hidden_size / num_attention_heads."""
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
