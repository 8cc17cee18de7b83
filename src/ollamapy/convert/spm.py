"""A SentencePiece-style Hugging Face tokenizer.json (Llama 2, TinyLlama, Mistral 7B v0.1)
in the form llama.cpp's SentencePiece tokenizer (`tokenizer.ggml.model` "llama") reads.

These files hold a BPE model with `byte_fallback`, the 256 `<0xXX>` byte tokens, `▁` for
spaces and merges that transformers generated from the SentencePiece model: every split of
every token into two tokens, ordered by the merged token's SentencePiece score. llama.cpp
does not read merges for this tokenizer: it merges, leftmost first, the adjacent pair whose
concatenation is the token with the highest score. So the scores written here are the
negated rank of the first merge producing each token, which orders pairs exactly as Hugging
Face's merge ranks do, provided that

- every pair of tokens (or single characters) concatenating to a token is a merge
  (llama.cpp would otherwise form tokens Hugging Face never forms), and
- the merges producing one token are adjacent in the list (one score per token).

Both are checked, as is the normalizer (llama.cpp prepends one space to every piece of text
after the start or a special token, as the legacy `Prepend("▁")` normalizer does; the
`Metaspace` pre-tokenizer skips that space when the text already begins with one, which
llama.cpp cannot do). What cannot be reproduced is refused, never approximated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
from gguf import TokenType

from ollamapy.convert import bpe
from ollamapy.convert.hf import read_optional_object
from ollamapy.errors import BadRequestError

SPACE = "▁"
BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]
_REPLACE_SPACE = {"type": "Replace", "pattern": {"String": " "}, "content": SPACE}
_NORMALIZERS: list[tuple[Any, bool]] = [
    (
        {
            "type": "Sequence",
            "normalizers": [{"type": "Prepend", "prepend": SPACE}, _REPLACE_SPACE],
        },
        True,
    ),
    ({"type": "Sequence", "normalizers": [_REPLACE_SPACE]}, False),
    (_REPLACE_SPACE, False),
]
"""Normalizers (with no pre-tokenizer) llama.cpp reproduces, and its `add_space_prefix`."""


@dataclass(frozen=True)
class SpmVocab:
    """Everything `tokenizer.*` in the GGUF needs for llama.cpp's SentencePiece tokenizer."""

    tokens: list[str]
    scores: list[float]
    types: list[int]
    special_ids: dict[str, int]
    add_bos: bool
    add_eos: bool
    add_space_prefix: bool
    chat_template: str | None


def is_sentencepiece_style(model_dir: Path) -> bool:
    """Whether tokenizer.json is a BPE with byte fallback and no byte-level pre-tokenizer
    (the SentencePiece-converted kind this module handles); anything else goes to `bpe`,
    which refuses byte fallback on top of byte-level BPE."""
    data = read_optional_object(model_dir / bpe.TOKENIZER_FILE)
    model = data.get("model")
    if not isinstance(model, dict) or model.get("type") != "BPE":
        return False
    byte_level = '"ByteLevel"' in json.dumps(data.get("pre_tokenizer"))
    return bool(model.get("byte_fallback")) and not byte_level


def load_spm_vocab(model_dir: Path, n_vocab: int, config: dict[str, Any]) -> SpmVocab:
    """Read tokenizer.json and its companions, with the token list padded to `n_vocab`."""
    data = bpe.read_tokenizer_json(model_dir)
    model = _spm_model(data)
    add_space_prefix = _space_prefix(data.get("normalizer"), data.get("pre_tokenizer"))
    by_id, kinds = bpe.token_ids(model, data.get("added_tokens") or [])
    scores = merge_scores(
        model["vocab"], set(by_id.values()), bpe.merge_strings(model.get("merges"))
    )
    tokens, types = bpe.token_list(by_id, kinds, n_vocab)
    unk_id = model["vocab"][model["unk_token"]]
    types = [
        _spm_type(i, text, kind, unk_id)
        for i, (text, kind) in enumerate(zip(tokens, types, strict=True))
    ]
    tok_config = read_optional_object(model_dir / "tokenizer_config.json")
    roles = bpe.role_texts(model_dir, tok_config)
    add_bos, add_eos = bpe.added_specials(tok_config, data.get("post_processor"), roles)
    return SpmVocab(
        tokens=tokens,
        scores=[scores.get(text, 0.0) for text in tokens],
        types=types,
        special_ids=bpe.special_ids(roles, by_id, config) | {"unk": unk_id},
        add_bos=add_bos,
        add_eos=add_eos,
        add_space_prefix=add_space_prefix,
        chat_template=bpe.chat_template(model_dir, tok_config),
    )


def _spm_model(data: dict[str, Any]) -> dict[str, Any]:
    """The `model` section: a byte-fallback BPE with an unknown token and all 256 bytes."""
    model: dict[str, Any] = data["model"]
    for key in ("continuing_subword_prefix", "end_of_word_suffix", "dropout", "ignore_merges"):
        if model.get(key):
            raise BadRequestError(f"tokenizer.json: BPE option {key} is not supported")
    vocab = model.get("vocab")
    if not isinstance(vocab, dict):
        raise BadRequestError("tokenizer.json: BPE model has no vocab")
    if model.get("unk_token") not in vocab:
        raise BadRequestError("tokenizer.json: byte-fallback BPE without an unknown token")
    if missing := [b for b in BYTE_TOKENS if b not in vocab]:
        raise BadRequestError(
            f"tokenizer.json: byte_fallback needs all 256 byte tokens; {missing[0]} "
            f"and {len(missing) - 1} more are missing"
        )
    return model


def _space_prefix(normalizer: Any, pre_tokenizer: Any) -> bool:
    """llama.cpp's `add_space_prefix` for the normalizer, if llama.cpp can do what it does."""
    if isinstance(pre_tokenizer, dict) and pre_tokenizer.get("type") == "Metaspace":
        raise BadRequestError(
            "tokenizer.json: the Metaspace pre-tokenizer is not supported: it adds no '▁' to "
            "text that already starts with a space, and llama.cpp always adds one"
        )
    if pre_tokenizer is None:
        for known, add_space_prefix in _NORMALIZERS:
            if normalizer == known:
                return add_space_prefix
    described = json.dumps({"normalizer": normalizer, "pre_tokenizer": pre_tokenizer})
    raise BadRequestError(
        f"tokenizer.json: unsupported SentencePiece-style normalizer/pre-tokenizer "
        f"{described[:400]}: llama.cpp reproduces only Prepend('▁') + Replace(' ', '▁')"
    )


def merge_scores(vocab: dict[str, int], texts: set[str], merges: list[str]) -> dict[str, float]:
    """Score of every token some merge produces: minus the rank of its first merge, so that
    llama.cpp's highest-score-first order is Hugging Face's lowest-rank-first order.

    `texts` is every token text llama.cpp can match (the vocabulary and added tokens).
    Tokens no merge produces score 0: llama.cpp only consults the score of a token that two
    adjacent pieces concatenate to, and `_check_complete` refuses any such token without a
    merge.
    """
    first: dict[str, int] = {}
    previous = None
    for rank, merge in enumerate(merges):
        left, right = merge.split(" ")
        merged = left + right
        if left not in vocab or right not in vocab or merged not in vocab:
            raise BadRequestError(f"tokenizer.json: merge {merge!r} is not over vocabulary tokens")
        if merged != previous and merged in first:
            raise BadRequestError(
                f"tokenizer.json: the merges producing {merged!r} are not adjacent, so no "
                "single score per token reproduces their order"
            )
        first.setdefault(merged, rank)
        previous = merged
    _check_complete(texts, set(merges))
    return {text: -float(rank) for text, rank in first.items()}


def _check_complete(texts: set[str], merges: set[str]) -> None:
    """Every split of a token into two parts llama.cpp can hold (tokens or single
    characters) must be a merge Hugging Face applies too."""
    for text in texts:
        for i in range(1, len(text)):
            left, right = text[:i], text[i:]
            if not (_reachable(left, texts) and _reachable(right, texts)):
                continue
            if left not in texts or right not in texts or f"{left} {right}" not in merges:
                raise BadRequestError(
                    f"tokenizer.json: {left!r} + {right!r} make the token {text!r} but are "
                    "not a merge; llama.cpp's SentencePiece tokenizer would merge them"
                )


def _reachable(piece: str, texts: set[str]) -> bool:
    """A piece llama.cpp can hold as one symbol: a token, or any single character."""
    return len(piece) == 1 or piece in texts


def _spm_type(token_id: int, text: str, kind: int, unk_id: int) -> int:
    """The SentencePiece token type: unknown, byte, or what `bpe` decided (control for
    special added tokens, user-defined for others, normal, unused)."""
    if token_id == unk_id:
        return TokenType.UNKNOWN
    if kind == TokenType.NORMAL and text in _BYTE_SET:
        return TokenType.BYTE
    return kind


_BYTE_SET = frozenset(BYTE_TOKENS)


def add_vocab(writer: gguf.GGUFWriter, vocab: SpmVocab) -> None:
    """The `tokenizer.*` key/values for llama.cpp's SentencePiece (`llama`) tokenizer."""
    writer.add_tokenizer_model("llama")
    writer.add_token_list(vocab.tokens)
    writer.add_token_scores(vocab.scores)
    writer.add_token_types(vocab.types)
    writer.add_add_space_prefix(vocab.add_space_prefix)
    bpe.add_specials(writer, vocab.special_ids, vocab.add_bos, vocab.add_eos, vocab.chat_template)
