"""Qwen2 and Qwen3 (`Qwen2ForCausalLM`, `Qwen3ForCausalLM`) as members of the Llama family.

Both convert through `llama.py`'s table-driven pieces; only their `DecoderSpec`s live here,
checked against llama.cpp's `qwen2` and `qwen3` loaders and graphs:

- llama.cpp runs both with NEOX ("rotate half") RoPE, the layout Hugging Face's weights are
  already in, so unlike Llama the Q and K rows are not permuted.
- Qwen2 has biases on the Q, K and V projections (always; it has no `attention_bias` flag)
  and llama.cpp's `qwen2` graph adds them; it has no separate head size.
- Qwen3 has none of those biases but RMS-normalises each head of Q and K before RoPE with
  `q_norm` / `k_norm` weights of `head_dim` entries, and its head_dim may differ from
  hidden_size / num_attention_heads (written as `key_length` / `value_length`). Its
  `attention_bias` would also put a bias on the output projection, which llama.cpp's
  `qwen3` graph never loads, so it is refused.
- Neither graph takes `rope_freqs`, so only linear RoPE scaling is reproducible; sliding
  windows (refused in `llama.py` when in use) and MoE (other model classes) are not.
"""

from __future__ import annotations

from gguf import MODEL_TENSOR

from ollamapy.convert.llama import LLAMA_LAYER, DecoderSpec, LayerTensors

_QKV_BIASES: LayerTensors = {
    "self_attn.q_proj.bias": (MODEL_TENSOR.ATTN_Q, "bias"),
    "self_attn.k_proj.bias": (MODEL_TENSOR.ATTN_K, "bias"),
    "self_attn.v_proj.bias": (MODEL_TENSOR.ATTN_V, "bias"),
}
_QK_NORMS: LayerTensors = {
    "self_attn.q_norm.weight": (MODEL_TENSOR.ATTN_Q_NORM, "weight"),
    "self_attn.k_norm.weight": (MODEL_TENSOR.ATTN_K_NORM, "weight"),
}

QWEN2 = DecoderSpec(
    name="Qwen2",
    hf_architecture="Qwen2ForCausalLM",
    gguf_architecture="qwen2",
    layer=LLAMA_LAYER | _QKV_BIASES,
    permute_qk=False,
    rope_types=("linear",),
    refused_flags=(),
    free_head_dim=False,
)

QWEN3 = DecoderSpec(
    name="Qwen3",
    hf_architecture="Qwen3ForCausalLM",
    gguf_architecture="qwen3",
    layer=LLAMA_LAYER | _QK_NORMS,
    permute_qk=False,
    rope_types=("linear",),
    refused_flags=("attention_bias",),
    free_head_dim=True,
)

SPECS = (QWEN2, QWEN3)
