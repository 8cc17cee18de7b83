"""Write tiny Qwen2 and Qwen3 models and their golden outputs, made by Hugging Face itself.

A sibling of scripts/make_tiny_llama.py (same corpus, texts, training loop and golden
format; it leaves the Llama outputs alone). Run it with the same torch/transformers Python,
offline:

    HF_HUB_OFFLINE=1 ~/.cache/ollamapy/st-venv/bin/python scripts/make_tiny_qwen.py

It writes, under tests/testdata/:

- `tiny-qwen2/`: Qwen2ForCausalLM with Q/K/V biases (randomised before training so that
  dropping them changes the logits clearly), grouped-query attention (4 heads, 2 KV heads),
  tied embeddings, float32 weights.
- `tiny-qwen3/`: Qwen3ForCausalLM with head_dim 32 although hidden_size / heads is 16,
  per-head q_norm / k_norm weights (randomised likewise), a separate `lm_head`, bfloat16.
- `tiny_qwen_golden.json`: as tiny_llama_golden.json, per text the HF ids, last-position
  float32 logits, and per-position argmax with its top-2 margin.

Both share one tokenizer built like Qwen's: byte-level BPE whose pre-tokenizer is the Qwen2
Split regex (Isolated) followed by ByteLevel without its own regex, an NFC normalizer, a
ByteLevel post-processor (no BOS added), ChatML specials, `<|im_end|>` as EOS and
`<|endoftext|>` as padding and (through config.json only) BOS. The model embeds more rows
than the tokenizer has tokens, as real Qwen checkpoints do.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from make_tiny_llama import (
    CHATML_TEMPLATE,
    CORPUS,
    SEED,
    TESTDATA,
    TINY_SHAPE,
    VOCAB_SIZE,
    golden_for,
    save_pretrained,
    train,
    write_golden,
)
from tokenizers import (
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

GOLDEN = TESTDATA / "tiny_qwen_golden.json"
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
"""The Split pattern of Qwen2/Qwen2.5/Qwen3's tokenizer.json."""
EMBEDDING_ROWS = 448
"""More rows than tokens (385), like Qwen's 151936 rows for about 151665 tokens."""

COMMON: dict[str, Any] = {
    "vocab_size": EMBEDDING_ROWS,
    **TINY_SHAPE,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "hidden_act": "silu",
    "use_sliding_window": False,
}


def train_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE with Qwen's pre-tokenizer and normalizer, trained on CORPUS."""
    tok = Tokenizer(models.BPE(ignore_merges=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    tok.add_tokens(["[[tool]]"])  # a non-special added token: user-defined in GGUF terms
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        chat_template=CHATML_TEMPLATE,
        model_max_length=2048,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )


def special_ids(tokenizer: PreTrainedTokenizerFast) -> dict[str, int]:
    """config.json's BOS (only named there, as in Qwen's configs) and EOS ids."""
    return {
        "bos_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>"),
    }


def randomise(model: PreTrainedModel, suffixes: tuple[str, ...], low: float, high: float) -> None:
    """Start the named parameters far from their defaults (zero biases, unit norms), so a
    converter that drops them produces clearly wrong logits."""
    generator = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(suffixes):
                param.copy_(torch.rand(param.shape, generator=generator) * (high - low) + low)


def build_qwen2(tokenizer: PreTrainedTokenizerFast) -> Qwen2ForCausalLM:
    torch.manual_seed(SEED)
    config = Qwen2Config(**COMMON, tie_word_embeddings=True, **special_ids(tokenizer))
    model = Qwen2ForCausalLM(config).float()
    randomise(model, ("q_proj.bias", "k_proj.bias", "v_proj.bias"), -1.0, 1.0)
    train(model, tokenizer)
    return model


def build_qwen3(tokenizer: PreTrainedTokenizerFast) -> Qwen3ForCausalLM:
    torch.manual_seed(SEED)
    config = Qwen3Config(
        **COMMON,
        head_dim=32,
        attention_bias=False,
        tie_word_embeddings=False,
        **special_ids(tokenizer),
    )
    model = Qwen3ForCausalLM(config).float()
    randomise(model, ("q_norm.weight", "k_norm.weight"), 0.3, 2.0)
    train(model, tokenizer)
    return model


VARIANTS: dict[str, tuple[Any, Any, torch.dtype]] = {
    "tiny-qwen2": (build_qwen2, Qwen2ForCausalLM, torch.float32),
    "tiny-qwen3": (build_qwen3, Qwen3ForCausalLM, torch.bfloat16),
}


def save(name: str) -> Path:
    """Train, save with save_pretrained into tests/testdata/<name>."""
    build, _, dtype = VARIANTS[name]
    tokenizer = train_tokenizer()
    return save_pretrained(name, build(tokenizer), tokenizer, dtype)


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    models = {name: golden_for(save(name), cls) for name, (_, cls, _) in VARIANTS.items()}
    write_golden(GOLDEN, "make_tiny_qwen.py", models)


if __name__ == "__main__":
    main()
