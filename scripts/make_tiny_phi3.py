"""Write a tiny Phi-3 model and its golden output, made by Hugging Face itself.

A sibling of scripts/make_tiny_llama.py and make_tiny_llama_spm.py (same corpus, training
loop, SentencePiece-style tokenizer and golden format; it leaves their outputs alone). Run it
with the same torch/transformers Python, offline:

    HF_HUB_OFFLINE=1 ~/.cache/ollamapy/st-venv/bin/python scripts/make_tiny_phi3.py

It writes, under tests/testdata/:

- `tiny-phi3/`: Phi3ForCausalLM (4 heads, 2 KV heads, so the fused `qkv_proj` has unequal
  Q and K/V parts; a separate `lm_head`; no sliding window; no RoPE scaling), with the
  tokenizer of make_tiny_llama_spm.py (Phi-3-mini's tokenizer is Llama 2's) plus Phi-3's
  added tokens and their `rstrip` flags (see `phi3_tokenizer`). Its fused
  `gate_up_proj` is trained like the rest, so a converter that swaps the gate and up halves
  gives clearly wrong logits. bfloat16.
- `tiny_phi3_golden.json`: as tiny_llama_golden.json.
"""

from __future__ import annotations

import json
import os

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
from make_tiny_llama_spm import TEXTS
from make_tiny_llama_spm import train_tokenizer as train_spm_tokenizer
from tokenizers import Tokenizer
from transformers import Phi3Config, Phi3ForCausalLM, PreTrainedTokenizerFast

NAME = "tiny-phi3"
GOLDEN = TESTDATA / "tiny_phi3_golden.json"
PHI3_ADDED = {"<|endoftext|>": False, "<|assistant|>": True, "<|end|>": True, "<|user|>": True}
"""Phi-3-mini's added tokens (after the SentencePiece vocabulary) and their `rstrip`."""
PHI3_TEXTS = [
    *TEXTS,
    "<|user|>\nWhat is the capital of France?<|end|>\n<|assistant|>\n",
    "Hello</s>  <|endoftext|> again <|end|>  done",
]
"""The SentencePiece texts plus a Phi-3 chat prompt and special tokens followed by spaces,
which the rstrip flags swallow (or, after `<|endoftext|>`, keep)."""


def phi3_tokenizer() -> PreTrainedTokenizerFast:
    """make_tiny_llama_spm.py's tokenizer in Phi-3-mini's shape: `</s>` and the chat tokens
    strip the whitespace after them, `<unk>`, `<s>` and `<|endoftext|>` do not. llama.cpp
    hard-codes exactly these flags for models whose general.name contains "phi3" (and needs
    `<|endoftext|>` in the vocabulary then)."""
    data = json.loads(train_spm_tokenizer().backend_tokenizer.to_str())
    next_id = max(token["id"] for token in data["added_tokens"]) + 1
    next_id = max(next_id, *data["model"]["vocab"].values()) + 1
    for token in data["added_tokens"]:
        token["rstrip"] = token["content"] == "</s>"
    for offset, (content, rstrip) in enumerate(PHI3_ADDED.items()):
        data["added_tokens"].append(_added(next_id + offset, content, rstrip))
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(data)),
        model_max_length=2048,
        add_bos_token=True,
        add_eos_token=False,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
    )


def _added(token_id: int, content: str, rstrip: bool) -> dict[str, object]:
    return {
        "id": token_id,
        "content": content,
        "single_word": False,
        "lstrip": False,
        "rstrip": rstrip,
        "normalized": False,
        "special": True,
    }


def build_phi3(tokenizer: PreTrainedTokenizerFast) -> Phi3ForCausalLM:
    """A 2-layer GQA Phi-3 with a fixed seed, briefly trained on the tokenized corpus."""
    torch.manual_seed(SEED)
    config = Phi3Config(
        vocab_size=len(tokenizer),
        **TINY_SHAPE,
        original_max_position_embeddings=256,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        hidden_act="silu",
        sliding_window=None,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.convert_tokens_to_ids("<s>"),
        eos_token_id=tokenizer.convert_tokens_to_ids("</s>"),
        pad_token_id=None,
    )
    model = Phi3ForCausalLM(config).float()
    train(model, tokenizer)
    return model


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tokenizer = phi3_tokenizer()
    # bfloat16 keeps the directory well under 600 KB
    target = save_pretrained(NAME, build_phi3(tokenizer), tokenizer, torch.bfloat16)
    models = {NAME: golden_for(target, Phi3ForCausalLM, PHI3_TEXTS)}
    write_golden(GOLDEN, "make_tiny_phi3.py", models)


if __name__ == "__main__":
    main()
