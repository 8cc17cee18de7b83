"""Phi-3 (`Phi3ForCausalLM`, Phi-3-mini-4k style) as a member of the Llama family, converted to
llama.cpp's `phi3` architecture.

Checked against llama.cpp's `phi3` loader and graph (src/models/phi3.cpp):

- Q, K and V are one matrix in the checkpoint (`qkv_proj`, Q rows then K then V, each
  num_key_value_heads * head_dim rows for K and V). llama.cpp loads it as `attn_qkv` and
  slices it in the same order, so it is written whole.
- The gate and up projections are one matrix (`gate_up_proj`): transformers applies SiLU to
  its first half and multiplies by the second; llama.cpp loads it as `ffn_up` with 2 * n_ff
  rows and applies `ggml_swiglu`, which also activates the first half. Written whole.
- Norms, `o_proj` and `down_proj` are Llama's. The graph has no separate head size (the
  output projection is n_embd x n_embd), and it runs NEOX RoPE, Hugging Face's layout, so
  Q and K are not permuted.
- The output matrix is optional in llama.cpp (it falls back to the token embedding), so
  tied embeddings convert too.
- RoPE scaling: Phi-3's only kind is `longrope` (also spelled `su` / `yarn` in old configs),
  which needs per-frequency `rope_factors_long` / `rope_factors_short` tensors and an
  attention factor; it is refused rather than approximated, as is a partial rotary factor
  (see `llama._check_full_rotary`).
- Sliding window: transformers masks attention to the last `sliding_window` positions
  whenever it is set, while llama.cpp's `phi3` loader switches sliding-window attention off
  ("Phi SWA is currently disabled"). With a window shorter than `max_position_embeddings`
  (Phi-3-mini-4k-instruct's 2047 in a 4096 context) the converted context stops at the
  window, where the two still agree (see `llama._context_length`).
"""

from __future__ import annotations

from gguf import MODEL_TENSOR

from ollamapy.convert.llama import DecoderSpec, LayerTensors

PHI3_LAYER: LayerTensors = {
    "input_layernorm.weight": (MODEL_TENSOR.ATTN_NORM, "weight"),
    "self_attn.qkv_proj.weight": (MODEL_TENSOR.ATTN_QKV, "weight"),
    "self_attn.o_proj.weight": (MODEL_TENSOR.ATTN_OUT, "weight"),
    "post_attention_layernorm.weight": (MODEL_TENSOR.FFN_NORM, "weight"),
    "mlp.gate_up_proj.weight": (MODEL_TENSOR.FFN_UP, "weight"),
    "mlp.down_proj.weight": (MODEL_TENSOR.FFN_DOWN, "weight"),
}

PHI3 = DecoderSpec(
    name="Phi-3",
    hf_architecture="Phi3ForCausalLM",
    gguf_architecture="phi3",
    layer=PHI3_LAYER,
    permute_qk=False,
    rope_types=(),
    refused_flags=(),
    free_head_dim=False,
    window_always_applies=True,
    fused_gate_up=True,
)

SPECS = (PHI3,)
