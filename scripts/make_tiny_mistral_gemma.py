"""Write a tiny Mistral and a tiny Gemma (1) model and their golden output, made by Hugging
Face itself.

A sibling of scripts/make_tiny_llama.py and make_tiny_llama_spm.py (same corpus, training
loop and golden format; it leaves their outputs alone). Run it with the same
torch/transformers Python, offline:

    HF_HUB_OFFLINE=1 ~/.cache/ollamapy/st-venv/bin/python scripts/make_tiny_mistral_gemma.py

It writes, under tests/testdata/:

- `tiny-mistral/`: MistralForCausalLM (4 heads, 2 KV heads, a separate `lm_head`) with
  `sliding_window` equal to `max_position_embeddings`, so the window is never reached and
  llama.cpp's `llama` graph (which has none) computes the same; the SentencePiece-style
  tokenizer of make_tiny_llama_spm.py (Llama 2 / Mistral 7B v0.1 shape). bfloat16.
- `tiny-gemma/`: GemmaForCausalLM with head_dim 32 although hidden_size / heads is 16,
  2 KV heads, tied embeddings, GELU (tanh) and Gemma's (1 + weight) RMSNorm, whose weights
  are randomised before training so a converter that forgets the +1 (or adds it twice) gives
  clearly wrong logits. Its tokenizer has Gemma's shape: `<pad>` `<eos>` `<bos>` `<unk>` at
  ids 0-3, the 256 byte tokens, a Replace(" ", "▁")-only normalizer (no space prefix), no
  pre-tokenizer, BOS added by the post-processor. bfloat16.
- `tiny_mistral_gemma_golden.json`: as tiny_llama_golden.json.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from make_tiny_llama import (
    SEED,
    TESTDATA,
    TINY_SHAPE,
    golden_for,
    save_pretrained,
    train,
    write_golden,
)
from make_tiny_llama_spm import TEXTS as SPM_TEXTS
from make_tiny_llama_spm import spm_bpe
from make_tiny_llama_spm import train_tokenizer as train_spm_tokenizer
from make_tiny_qwen import randomise
from tokenizers import (
    decoders,
    normalizers,
    processors,
)
from transformers import (
    GemmaConfig,
    GemmaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    PreTrainedTokenizerFast,
)

GOLDEN = TESTDATA / "tiny_mistral_gemma_golden.json"
GEMMA_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>"]
GEMMA_TURNS = ["<start_of_turn>", "<end_of_turn>"]
GEMMA_TEXTS = [text for text in SPM_TEXTS if "</s>" not in text] + [
    "Hello<eos><bos> again",
    "<start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n<start_of_turn>model\n",
]
"""The SentencePiece texts (leading spaces, bytes, merge-order words) with Gemma's specials."""

COMMON: dict[str, Any] = {**TINY_SHAPE, "rope_theta": 10000.0}


def train_gemma_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-fallback BPE rebuilt in the form transformers' Gemma converter writes: complete
    merges, a Replace-only normalizer (no dummy prefix), no pre-tokenizer."""
    tok = spm_bpe("first", GEMMA_SPECIALS)
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    )
    tok.add_special_tokens(GEMMA_SPECIALS + GEMMA_TURNS)
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", 2)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        model_max_length=2048,
        add_bos_token=True,
        add_eos_token=False,
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<unk>",
        pad_token="<pad>",
    )


def build_mistral(tokenizer: PreTrainedTokenizerFast) -> MistralForCausalLM:
    """GQA Mistral whose sliding window equals the context (accepted: never reached)."""
    torch.manual_seed(SEED)
    config = MistralConfig(
        **COMMON,
        vocab_size=len(tokenizer),
        rms_norm_eps=1e-5,
        hidden_act="silu",
        sliding_window=COMMON["max_position_embeddings"],
        tie_word_embeddings=False,
        bos_token_id=tokenizer.convert_tokens_to_ids("<s>"),
        eos_token_id=tokenizer.convert_tokens_to_ids("</s>"),
    )
    model = MistralForCausalLM(config).float()
    train(model, tokenizer)
    return model


def build_gemma(tokenizer: PreTrainedTokenizerFast) -> GemmaForCausalLM:
    """Gemma with an explicit head_dim and norm weights far from Gemma's zero init."""
    torch.manual_seed(SEED)
    config = GemmaConfig(
        **COMMON,
        vocab_size=len(tokenizer),
        head_dim=32,
        rms_norm_eps=1e-6,
        hidden_act="gelu_pytorch_tanh",
        tie_word_embeddings=True,
        pad_token_id=tokenizer.convert_tokens_to_ids("<pad>"),
        bos_token_id=tokenizer.convert_tokens_to_ids("<bos>"),
        eos_token_id=tokenizer.convert_tokens_to_ids("<eos>"),
    )
    model = GemmaForCausalLM(config).float()
    randomise(model, ("norm.weight",), -0.5, 1.0)
    train(model, tokenizer)
    return model


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    spm_tokenizer = train_spm_tokenizer()
    gemma_tokenizer = train_gemma_tokenizer()
    # bfloat16 keeps each directory well under 600 KB
    mistral = save_pretrained(
        "tiny-mistral", build_mistral(spm_tokenizer), spm_tokenizer, torch.bfloat16
    )
    gemma = save_pretrained(
        "tiny-gemma", build_gemma(gemma_tokenizer), gemma_tokenizer, torch.bfloat16
    )
    models = {
        "tiny-mistral": golden_for(mistral, MistralForCausalLM, SPM_TEXTS),
        "tiny-gemma": golden_for(gemma, GemmaForCausalLM, GEMMA_TEXTS),
    }
    write_golden(GOLDEN, "make_tiny_mistral_gemma.py", models)


if __name__ == "__main__":
    main()
