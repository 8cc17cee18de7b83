"""Gemma 1 (`GemmaForCausalLM`) as a member of the Llama family, converted to llama.cpp's
`gemma` architecture.

Checked against llama.cpp's `gemma` loader and graph (src/models/gemma.cpp):

- The tensors are Llama's, under the same names, but there is never an output matrix: the
  graph multiplies by the token embedding (Gemma ties them), so untied checkpoints are
  refused and a saved `lm_head` copy is dropped.
- Hugging Face's Gemma RMSNorm scales by (1 + weight); llama.cpp's by the weight, so every
  norm weight is written plus one (in float32, as transformers computes it).
- The graph itself multiplies the embeddings by sqrt(hidden_size), as transformers does, so
  the embedding is written unchanged.
- The feed-forward is GELU-gated (tanh approximation, transformers' `gelu_pytorch_tanh`;
  transformers reads the legacy `gelu` of the original configs as the same).
- llama.cpp runs `gemma` with NEOX RoPE, Hugging Face's layout: Q and K are not permuted.
- head_dim may differ from hidden_size / heads (Gemma 7B: 256 vs 192); it is written as
  `key_length` / `value_length`. Attention is scaled by 1/sqrt(head_dim) in both.
- The graph takes no `rope_freqs`, so only linear RoPE scaling is reproducible.
"""

from __future__ import annotations

from ollamapy.convert.llama import LLAMA_LAYER, DecoderSpec

GEMMA = DecoderSpec(
    name="Gemma",
    hf_architecture="GemmaForCausalLM",
    gguf_architecture="gemma",
    layer=LLAMA_LAYER,
    permute_qk=False,
    rope_types=("linear",),
    refused_flags=("attention_bias",),
    free_head_dim=True,
    activations=("gelu_pytorch_tanh", "gelu"),
    norm_offset=1.0,
    tied_only=True,
)

SPECS = (GEMMA,)
