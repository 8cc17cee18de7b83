"""Write a tiny Llama with a SentencePiece-style tokenizer.json, and its golden output.

Run it with a Python that has torch, transformers and tokenizers; it never touches the
network:

    HF_HUB_OFFLINE=1 ~/.cache/ollamapy/st-venv/bin/python scripts/make_tiny_llama_spm.py

It writes `tests/testdata/tiny-llama-spm/` and `tests/testdata/tiny_llama_spm_golden.json`.
The tokenizer has the shape transformers' own SentencePiece converter gives Llama 2,
TinyLlama and Mistral 7B v0.1: a BPE model with `byte_fallback`, `<unk>` `<s>` `</s>` at
ids 0-2, the 256 `<0xXX>` byte tokens at ids 3-258, the legacy normalizer
(Prepend("▁") + Replace(" ", "▁")) and no pre-tokenizer, and merges regenerated the way that
converter writes them: every split of every token into two tokens, ordered by the merged
token's id. The BPE is trained with `tokenizers` on ASCII text plus a few accented letters,
so CJK characters and emoji fall back to bytes.
"""

from __future__ import annotations

import os

import torch
from make_tiny_llama import (
    CORPUS,
    TESTDATA,
    build_model,
    golden_for,
    save_pretrained,
    write_golden,
)
from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import PreTrainedTokenizerFast

NAME = "tiny-llama-spm"
GOLDEN = TESTDATA / "tiny_llama_spm_golden.json"
VOCAB_SIZE = 560
SPECIALS = ["<unk>", "<s>", "</s>"]
BYTES = [f"<0x{b:02X}>" for b in range(256)]
KEEP = set("éïü")
"""Non-ASCII letters the tokenizer learns; every other non-ASCII character is bytes."""

TEXTS = [
    "Hello world!",
    "The quick brown fox jumps over the lazy dog.",
    "  two leading spaces, then  double  and   triple   spaces.",
    " one leading space",
    "Pi is 3.14159; 2024 and 12345 too.",
    "Café naïve 中文 text 🙂 and Ünïcödé — done.",
    "Tabs\tand\nnew lines\n\nhere.",
    "Hello</s><s> again",
    "",
    "The new double.",
    "low tower and modern lantern.",
    "ceap enst cern ndin",
]
"""Encoded with special tokens parsed, as a chat prompt would be. The last three hold words
whose tokens depend on the merge order (leftmost-first merging with equal scores gives
other ids), so they fail if the scores are wrong."""


def spm_bpe(prepend_scheme: str, specials: list[str]) -> Tokenizer:
    """Train a byte-fallback BPE on words (Metaspace with `prepend_scheme`), then rebuild
    it as transformers' SentencePiece converters write one: complete merges and no
    pre-tokenizer. The caller adds the normalizer, decoder and post-processor."""
    trained = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    trained.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme=prepend_scheme, split=True)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=specials + BYTES, show_progress=False
    )
    corpus = ["".join(c for c in line if ord(c) < 128 or c in KEEP) for line in CORPUS]
    trained.train_from_iterator(corpus * 4, trainer=trainer)
    vocab = trained.get_vocab(with_added_tokens=False)
    return Tokenizer(
        models.BPE(vocab=vocab, merges=spm_merges(vocab), byte_fallback=True, unk_token="<unk>")
    )


def train_tokenizer() -> PreTrainedTokenizerFast:
    """The converted-SentencePiece form of Llama 2: complete merges, legacy normalizer, no
    pre-tokenizer."""
    tok = spm_bpe("always", SPECIALS)
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence(
        [
            decoders.Replace("▁", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    tok.add_special_tokens(SPECIALS)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        model_max_length=2048,
        add_bos_token=True,
        add_eos_token=False,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
    )


def spm_merges(vocab: dict[str, int]) -> list[tuple[str, str]]:
    """Every (left, right) pair of tokens that concatenate to a token, ordered by the
    merged token's id, then by the pieces' ids: as transformers' SentencePiece converter
    writes them (there, the id order is SentencePiece's score order)."""
    merges = []
    for merged, _ in sorted(vocab.items(), key=lambda item: item[1]):
        local = [
            (merged[:i], merged[i:])
            for i in range(1, len(merged))
            if merged[:i] in vocab and merged[i:] in vocab
        ]
        local.sort(key=lambda pair: (vocab[pair[0]], vocab[pair[1]]))
        merges.extend(local)
    return merges


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tokenizer = train_tokenizer()
    variant = {
        "roles": {"bos_token": "<s>", "eos_token": "</s>"},
        "config": {"tie_word_embeddings": False},
    }
    target = save_pretrained(NAME, build_model(tokenizer, variant), tokenizer, torch.bfloat16)
    write_golden(GOLDEN, "make_tiny_llama_spm.py", {NAME: golden_for(target, texts=TEXTS)})


if __name__ == "__main__":
    main()
