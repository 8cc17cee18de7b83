"""Write tiny Llama models and their golden outputs, made by Hugging Face itself.

Run it with a Python that has torch, transformers and tokenizers (kept out of the project's
venv); it never touches the network:

    HF_HUB_OFFLINE=1 ~/.cache/ollamapy/st-venv/bin/python scripts/make_tiny_llama.py

It writes two model directories and one golden file under tests/testdata/:

- `tiny-llama/`: SmolLM2-style (digits split + byte-level pre-tokenizer, ChatML specials,
  no BOS), float32 weights, a separate `lm_head`.
- `tiny-llama-tied/`: Llama-3-style (the Llama 3 split regex + byte-level, `ignore_merges`,
  a BOS token added by the post-processor), bfloat16 weights, tied embeddings and
  `rope_scaling` of type llama3 (with a short original context so the scaling matters).
- `tiny_llama_golden.json`: for fixed texts, the HF tokenizer's ids and the HF model's
  float32 logits at the last position plus, at every position, the argmax and its margin
  over the runner-up (so a test can tell a real disagreement from a near tie).

Both tokenizers are trained with `tokenizers` on fixed text and both models are trained for
a few hundred steps on it, so their predictions are peaked (a random model's near-flat logits
would make argmax comparisons meaningless) and every norm weight differs from 1.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

import tokenizers
import torch
import transformers
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

ROOT = Path(__file__).resolve().parents[1]
TESTDATA = ROOT / "tests" / "testdata"
GOLDEN = TESTDATA / "tiny_llama_golden.json"
SEED = 1234
VOCAB_SIZE = 384
TRAIN_STEPS = 300
DECIMALS = 6

LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
"""The Split pattern of Meta-Llama-3's tokenizer.json."""

CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

CORPUS = [
    "The quick brown fox jumps over the lazy dog. The dog sleeps; the fox runs away.",
    "Once upon a time there was a little model that learned to count: 1, 2, 3, 42, 2024.",
    "I'm sure you'll agree that it's what we'd do, isn't it? They've said we're fine.",
    "Pi is about 3.14159 and e is about 2.71828; 100 + 250 = 350.",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))  # prints 5\n",
    "Café, naïve, résumé — Ünïcödé text, plus an emoji 🙂 and 中文 characters.",
    "Hello world! Hello there, general. Hello again, my friend.",
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
    "<|im_start|>assistant\nThe capital of France is Paris.<|im_end|>\n",
    "Tabs\tand  double  spaces,\nnew lines\n\nand   more   spaces.",
]

TEXTS = [
    "Hello world!",
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure it's 3.14159, isn't it? 2024 and 12345 too.",
    "Café 🙂 中文, tabs\tand  spaces\n\nnew lines.",
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "Once upon a time [[tool]] said hello.",
]
"""Encoded with special tokens parsed, as a chat prompt would be."""


def byte_level(use_regex: bool) -> pre_tokenizers.ByteLevel:
    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=use_regex)


VARIANTS: dict[str, dict[str, Any]] = {
    "tiny-llama": {
        "pre_tokenizer": pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), byte_level(True)]
        ),
        "ignore_merges": False,
        "bos": None,
        "specials": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        "roles": {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"},
        "roles_extra": {"unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>"},
        "dtype": torch.float32,
        "config": {"tie_word_embeddings": False},
    },
    "tiny-llama-tied": {
        "pre_tokenizer": pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
                byte_level(False),
            ]
        ),
        "ignore_merges": True,
        "bos": "<|begin_of_text|>",
        "specials": ["<|begin_of_text|>", "<|end_of_text|>", "<|im_start|>", "<|im_end|>"],
        "roles": {"bos_token": "<|begin_of_text|>", "eos_token": "<|im_end|>"},
        "roles_extra": {},
        "dtype": torch.bfloat16,
        "config": {
            "tie_word_embeddings": True,
            "rope_theta": 500000.0,
            "rope_scaling": {
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 16,
            },
            "max_position_embeddings": 128,
        },
    },
}


def train_tokenizer(variant: dict[str, Any]) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on CORPUS, wrapped the way transformers saves real ones."""
    tok = Tokenizer(models.BPE(ignore_merges=variant["ignore_merges"]))
    tok.pre_tokenizer = variant["pre_tokenizer"]
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=variant["specials"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    tok.add_tokens(["[[tool]]"])  # a non-special added token: user-defined in GGUF terms
    bos = variant["bos"]
    if bos is None:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    else:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A",
            pair=f"{bos} $A {bos} $B",
            special_tokens=[(bos, tok.token_to_id(bos))],
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        chat_template=CHATML_TEMPLATE,
        model_max_length=2048,
        add_bos_token=bos is not None,
        **variant["roles"],
        **variant["roles_extra"],
    )


TINY_SHAPE: dict[str, int] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
}
"""The size of every tiny golden decoder (what the conversion tests' `decoder_block` expects)."""


def build_model(tokenizer: PreTrainedTokenizerFast, variant: dict[str, Any]) -> LlamaForCausalLM:
    """A 2-layer GQA Llama with a fixed seed, briefly trained on the tokenized corpus."""
    torch.manual_seed(SEED)
    settings: dict[str, Any] = {
        "vocab_size": len(tokenizer),
        **TINY_SHAPE,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "bos_token_id": tokenizer.convert_tokens_to_ids(variant["roles"]["bos_token"]),
        "eos_token_id": tokenizer.convert_tokens_to_ids(variant["roles"]["eos_token"]),
    }
    config = LlamaConfig(**(settings | variant["config"]))
    model = LlamaForCausalLM(config).float()
    train(model, tokenizer)
    return model


def train(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast) -> None:
    """A few hundred Adam steps on windows of the corpus: enough for peaked predictions."""
    ids = tokenizer("\n".join(CORPUS), add_special_tokens=False)["input_ids"]
    data = torch.tensor(ids)
    window = 48
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    generator = torch.Generator().manual_seed(SEED)
    model.train()
    for _ in range(TRAIN_STEPS):
        starts = torch.randint(0, len(data) - window - 1, (8,), generator=generator)
        batch = torch.stack([data[s : s + window] for s in starts])
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    print(f"final training loss {loss.item():.3f}", file=sys.stderr)


def save_pretrained(
    name: str, model: Any, tokenizer: PreTrainedTokenizerFast, dtype: torch.dtype
) -> Path:
    """Replace tests/testdata/<name> with the model, stored in `dtype`, and its tokenizer,
    as transformers saves them (every generator script writes its models this way)."""
    target = TESTDATA / name
    shutil.rmtree(target, ignore_errors=True)
    model.to(dtype).save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    return target


def save(name: str, variant: dict[str, Any]) -> Path:
    """Train, then save with save_pretrained."""
    tokenizer = train_tokenizer(variant)
    model = build_model(tokenizer, variant)
    return save_pretrained(name, model, tokenizer, variant["dtype"])


def golden_for(
    target: Path, model_class: Any = LlamaForCausalLM, texts: list[str] | None = None
) -> list[dict[str, Any]]:
    """The saved directory, reloaded by transformers: ids and float32 logits per text
    (`model_class` lets scripts/make_tiny_qwen.py reuse this for its model classes)."""
    tokenizer = PreTrainedTokenizerFast.from_pretrained(target)
    model = model_class.from_pretrained(target, dtype=torch.float32).eval()
    cases = []
    for text in TEXTS if texts is None else texts:
        ids = tokenizer(text)["input_ids"]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0]
        top2 = torch.topk(logits, 2, dim=-1).values
        cases.append(
            {
                "text": text,
                "ids": ids,
                "last_logits": [round(float(x), DECIMALS) for x in logits[-1]],
                "argmax": [int(i) for i in logits.argmax(dim=-1)],
                "top2_margin": [round(float(m), DECIMALS) for m in top2[:, 0] - top2[:, 1]],
            }
        )
    return cases


def write_golden(path: Path, script: str, models: dict[str, list[dict[str, Any]]]) -> None:
    """The golden file: the command that made it, the library versions, the cases."""
    golden: dict[str, Any] = {
        "command": f"HF_HUB_OFFLINE=1 ~/.cache/ollamapy/st-venv/bin/python scripts/{script}",
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
        },
        "models": models,
    }
    path.write_text(json.dumps(golden, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {path}", file=sys.stderr)


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    models = {name: golden_for(save(name, variant)) for name, variant in VARIANTS.items()}
    write_golden(GOLDEN, "make_tiny_llama.py", models)


if __name__ == "__main__":
    main()
