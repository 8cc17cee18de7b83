"""Mistral (`MistralForCausalLM`) as a member of the Llama family.

Ollama and llama.cpp convert Mistral to llama.cpp's `llama` architecture: its tensors are
Llama's, under the same names, and llama.cpp runs them with normal (adjacent-pair) RoPE, so
Q and K are permuted exactly as for Llama. RoPE scaling goes through the same transformers
code as Llama's, so the same kinds are reproducible.

The one real difference is `sliding_window`: transformers masks attention to the last
`sliding_window` positions whenever it is set, and llama.cpp's `llama` graph has no window.
A window at least as long as `max_position_embeddings` is never reached (Mistral 7B v0.2 and
later set it to null); with a shorter one (v0.1's 4096 in a 32768 context) the converted
model's context stops at the window, where the two still agree (see `llama._context_length`).
"""

from __future__ import annotations

from ollamapy.convert.llama import LLAMA_LAYER, DecoderSpec

MISTRAL = DecoderSpec(
    name="Mistral",
    hf_architecture="MistralForCausalLM",
    gguf_architecture="llama",
    layer=LLAMA_LAYER,
    permute_qk=True,
    rope_types=("linear", "llama3"),
    refused_flags=(),
    free_head_dim=True,
    window_always_applies=True,
)

SPECS = (MISTRAL,)
