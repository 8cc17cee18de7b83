"""The WordPiece vocabulary of a BERT model, in the form llama.cpp's `bert` tokenizer wants.

llama.cpp's WPM tokenizer marks the start of every word with the SentencePiece space
U+2581 and looks pieces up by exact text. So a word-initial piece `hello` must be stored as
`▁hello`, a continuation piece `##lo` as bare `lo`, and special tokens (`[CLS]` ...) verbatim,
or the tokenizer would never match them. Special tokens are CONTROL so user text can't forge
them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gguf import TokenType

from ollamapy.convert.hf import read_json_object, read_optional_object
from ollamapy.errors import BadRequestError

WORD_START = "\u2581"
CONTINUATION = "##"
MAX_VOCAB_TXT_BYTES = 64 * 1024 * 1024

SPECIAL_ROLES: dict[str, str] = {
    "unk": "[UNK]",
    "cls": "[CLS]",
    "sep": "[SEP]",
    "pad": "[PAD]",
    "mask": "[MASK]",
}
"""Each special-token role and BERT's conventional default text for it."""

REQUIRED_ROLES = ("unk", "cls", "sep")
"""Without these llama.cpp can neither frame an input nor map unknown words."""


@dataclass(frozen=True)
class WordPieceVocab:
    """Vocabulary in Hugging Face form (`##` continuations) plus token types and roles."""

    tokens: list[str]
    types: list[int]
    special_ids: dict[str, int]

    def llama_tokens(self) -> list[str]:
        """Token texts rewritten into llama.cpp's phantom-space convention."""
        return [_phantom(tok, typ) for tok, typ in zip(self.tokens, self.types, strict=True)]


def _phantom(token: str, token_type: int) -> str:
    """Word-initial pieces gain U+2581, `##` continuations lose the prefix, controls stay.

    Unused filler ids (`[PADn]`) stay verbatim too: they are not pieces and must never match.
    """
    if token_type in (TokenType.CONTROL, TokenType.UNUSED):
        return token
    if token.startswith(CONTINUATION):
        return token[len(CONTINUATION) :]
    return WORD_START + token


def load_wordpiece_vocab(model_dir: Path, n_vocab: int) -> WordPieceVocab:
    """Read the vocabulary from tokenizer.json (preferred) or vocab.txt, padded to `n_vocab`.

    `n_vocab` is the row count of the word-embedding matrix: llama.cpp requires the token
    list to match it exactly, so ids the tokenizer never produces become unused `[PADn]`.
    """
    by_id, added_special = _read_token_ids(model_dir)
    if max(by_id, default=-1) >= n_vocab:
        raise BadRequestError(
            f"tokenizer has token id {max(by_id)} but the model embeds only {n_vocab} tokens"
        )
    role_texts = _special_role_texts(model_dir)
    control = added_special | set(role_texts.values())
    tokens: list[str] = []
    types: list[int] = []
    for token_id in range(n_vocab):
        text = by_id.get(token_id)
        if text is None:
            tokens.append(f"[PAD{token_id}]")
            types.append(TokenType.UNUSED)
        else:
            tokens.append(text)
            types.append(TokenType.CONTROL if text in control else TokenType.NORMAL)
    return WordPieceVocab(tokens, types, _special_ids(by_id, role_texts))


def _read_token_ids(model_dir: Path) -> tuple[dict[int, str], set[str]]:
    """Map id → token text, and the set of texts declared special by added_tokens."""
    tokenizer_json = model_dir / "tokenizer.json"
    if tokenizer_json.is_file():
        return _from_tokenizer_json(read_json_object(tokenizer_json))
    vocab_txt = model_dir / "vocab.txt"
    if vocab_txt.is_file():
        return _from_vocab_txt(vocab_txt), set()
    raise BadRequestError(f"no tokenizer.json or vocab.txt in {model_dir}")


def _from_tokenizer_json(data: dict[str, Any]) -> tuple[dict[int, str], set[str]]:
    """Token ids from a `tokenizers` WordPiece model, plus its added tokens."""
    model = data.get("model")
    if not isinstance(model, dict) or model.get("type") != "WordPiece":
        kind = model.get("type") if isinstance(model, dict) else None
        raise BadRequestError(f"tokenizer.json: expected a WordPiece model, found {kind!r}")
    vocab = model.get("vocab")
    if not isinstance(vocab, dict):
        raise BadRequestError("tokenizer.json: WordPiece model has no vocab")
    by_id = _invert(vocab.items())
    special: set[str] = set()
    for added in data.get("added_tokens") or []:
        if isinstance(added, dict) and isinstance(added.get("content"), str):
            by_id.update(_invert([(added["content"], added.get("id"))]))
            if added.get("special"):
                special.add(added["content"])
    return by_id, special


def _invert(pairs: Any) -> dict[int, str]:
    """Turn (token, id) pairs into id → token, rejecting non-integer or negative ids."""
    by_id: dict[int, str] = {}
    for token, token_id in pairs:
        if not isinstance(token_id, int) or isinstance(token_id, bool) or token_id < 0:
            raise BadRequestError(f"tokenizer.json: token {token!r} has invalid id {token_id!r}")
        by_id[token_id] = token
    return by_id


def _from_vocab_txt(path: Path) -> dict[int, str]:
    """BERT's classic vocab.txt: one token per line, the line number is the id."""
    if path.stat().st_size > MAX_VOCAB_TXT_BYTES:
        raise BadRequestError("vocab.txt is too large")
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return {i: line.rstrip("\r") for i, line in enumerate(lines)}


def _special_role_texts(model_dir: Path) -> dict[str, str]:
    """Text of each special role: special_tokens_map.json overrides tokenizer_config.json."""
    merged = read_optional_object(model_dir / "tokenizer_config.json")
    merged.update(read_optional_object(model_dir / "special_tokens_map.json"))
    roles: dict[str, str] = {}
    for role, default in SPECIAL_ROLES.items():
        value = merged.get(f"{role}_token", default)
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str):
            roles[role] = value
    return roles


def _special_ids(by_id: dict[int, str], role_texts: dict[str, str]) -> dict[str, int]:
    """Resolve role texts to ids; the roles llama.cpp cannot work without must exist."""
    ids_by_text = {text: token_id for token_id, text in sorted(by_id.items(), reverse=True)}
    ids = {role: ids_by_text[t] for role, t in role_texts.items() if t in ids_by_text}
    if missing := [role for role in REQUIRED_ROLES if role not in ids]:
        raise BadRequestError(
            f"tokenizer has no {missing[0]} token ({role_texts.get(missing[0])!r} not in vocab)"
        )
    return ids
