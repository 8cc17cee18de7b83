"""Independent numpy oracles: a BERT WordPiece tokenizer and a sentence-transformers forward pass.

They follow the Hugging Face definitions (BertNormalizer + BertPreTokenizer + WordPiece, then
BertModel → mean pooling → L2 normalisation), not llama.cpp's code, so agreement between the
converted GGUF run by llama.cpp and these functions is evidence the conversion is right.
Computation is in float64 to keep the oracle's own error out of the comparison.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ollamapy.convert.hf import read_json_object
from ollamapy.convert.safetensors import open_checkpoint

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ReferenceTokenizer:
    """BERT uncased WordPiece, as `tokenizers`' BertNormalizer/BertPreTokenizer define it."""

    vocab: dict[str, int]
    lowercase: bool = True
    max_chars_per_word: int = 100

    @classmethod
    def from_dir(cls, model_dir: Path) -> ReferenceTokenizer:
        """Read the vocabulary from tokenizer.json (or vocab.txt)."""
        path = model_dir / "tokenizer.json"
        if path.is_file():
            data = read_json_object(path)
            vocab = dict(data["model"]["vocab"])
            lowercase = bool((data.get("normalizer") or {}).get("lowercase", True))
            return cls(vocab, lowercase)
        lines = (model_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()
        return cls({tok: i for i, tok in enumerate(lines)})

    def encode(self, text: str, max_length: int | None = None) -> list[int]:
        """[CLS] pieces [SEP], truncated like HF (the pieces are cut, the frame is kept)."""
        pieces = [p for word in self._words(text) for p in self._wordpiece(word)]
        if max_length is not None:
            pieces = pieces[: max_length - 2]
        ids = [self.vocab["[CLS]"], *(self.vocab[p] for p in pieces), self.vocab["[SEP]"]]
        return ids

    def _words(self, text: str) -> list[str]:
        """Normalise, then split on whitespace and around every punctuation character."""
        words: list[str] = []
        current: list[str] = []
        for ch in self._normalize(text):
            if ch.isspace() or _is_punctuation(ch):
                if current:
                    words.append("".join(current))
                    current = []
                if not ch.isspace():
                    words.append(ch)
            else:
                current.append(ch)
        if current:
            words.append("".join(current))
        return words

    def _normalize(self, text: str) -> str:
        """Drop control characters, space out CJK, strip accents and lowercase."""
        out: list[str] = []
        for ch in text:
            cp = ord(ch)
            if cp in (0, 0xFFFD) or (_is_control(ch)):
                continue
            if _is_cjk(cp):
                out.append(f" {ch} ")
            else:
                out.append(" " if ch.isspace() else ch)
        normalised = "".join(out)
        if self.lowercase:
            decomposed = unicodedata.normalize("NFD", normalised)
            stripped = "".join(c for c in decomposed if unicodedata.category(c) != "Mn")
            normalised = stripped.lower()
        return normalised

    def _wordpiece(self, word: str) -> list[str]:
        """Greedy longest-match-first; a word with any unmatched remainder becomes [UNK]."""
        if len(word) > self.max_chars_per_word:
            return ["[UNK]"]
        pieces: list[str] = []
        start = 0
        while start < len(word):
            end = len(word)
            while end > start:
                candidate = word[start:end] if start == 0 else "##" + word[start:end]
                if candidate in self.vocab:
                    pieces.append(candidate)
                    break
                end -= 1
            else:
                return ["[UNK]"]
            start = end
        return pieces


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    ascii_punct = 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126
    return ascii_punct or unicodedata.category(ch).startswith("P")


def _is_control(ch: str) -> bool:
    if ch in "\t\n\r":
        return False
    return unicodedata.category(ch) in ("Cc", "Cf")


def _is_cjk(cp: int) -> bool:
    ranges = (
        (0x4E00, 0x9FFF),
        (0x3400, 0x4DBF),
        (0x20000, 0x2A6DF),
        (0x2A700, 0x2B73F),
        (0x2B740, 0x2B81F),
        (0x2B820, 0x2CEAF),
        (0xF900, 0xFAFF),
        (0x2F800, 0x2FA1F),
    )
    return any(lo <= cp <= hi for lo, hi in ranges)


class ReferenceBert:
    """BertModel's encoder from the raw checkpoint, plus sentence-transformers pooling."""

    def __init__(self, model_dir: Path) -> None:
        checkpoint = open_checkpoint(model_dir)
        self.w: dict[str, F64] = {
            name.removeprefix("bert."): np.asarray(checkpoint.load(name), dtype=np.float64)
            for name in checkpoint
        }
        config = read_json_object(model_dir / "config.json")
        self.n_layer = int(config["num_hidden_layers"])
        self.n_head = int(config["num_attention_heads"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))

    def hidden_states(self, ids: list[int]) -> F64:
        """Last hidden layer for one unpadded sequence (all token types 0)."""
        w = self.w
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][: len(ids)]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = self._norm(x, "embeddings.LayerNorm")
        for layer in range(self.n_layer):
            x = self._layer(x, f"encoder.layer.{layer}.")
        return x

    def embed(self, ids: list[int], pooling: str = "mean") -> F64:
        """Pooled, L2-normalised sentence embedding (what all-MiniLM-L6-v2 returns)."""
        h = self.hidden_states(ids)
        pooled = h.mean(axis=0) if pooling == "mean" else h[0] if pooling == "cls" else h[-1]
        result: F64 = pooled / np.linalg.norm(pooled)
        return result

    def _layer(self, x: F64, p: str) -> F64:
        n, d = x.shape
        hd = d // self.n_head

        def heads(t: F64) -> F64:
            return t.reshape(n, self.n_head, hd).transpose(1, 0, 2)

        q = heads(self._linear(x, p + "attention.self.query"))
        k = heads(self._linear(x, p + "attention.self.key"))
        v = heads(self._linear(x, p + "attention.self.value"))
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        probs = scores / scores.sum(axis=-1, keepdims=True)
        ctx = (probs @ v).transpose(1, 0, 2).reshape(n, d)
        x = self._norm(
            x + self._linear(ctx, p + "attention.output.dense"), p + "attention.output.LayerNorm"
        )
        inner = _gelu(self._linear(x, p + "intermediate.dense"))
        return self._norm(x + self._linear(inner, p + "output.dense"), p + "output.LayerNorm")

    def _linear(self, x: F64, name: str) -> F64:
        out: F64 = x @ self.w[name + ".weight"].T + self.w[name + ".bias"]
        return out

    def _norm(self, x: F64, name: str) -> F64:
        mean = x.mean(axis=-1, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
        out: F64 = (x - mean) / np.sqrt(var + self.eps) * self.w[name + ".weight"] + self.w[
            name + ".bias"
        ]
        return out


_ERF: Any = np.frompyfunc(math.erf, 1, 1)


def _gelu(x: F64) -> F64:
    """Exact (erf) GELU, the `gelu` of Hugging Face's BERT."""
    out: F64 = 0.5 * x * (1.0 + _ERF(x / math.sqrt(2.0)).astype(np.float64))
    return out


def cosine(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> float:
    """Cosine similarity of two vectors."""
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
