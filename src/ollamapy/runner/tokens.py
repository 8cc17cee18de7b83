"""Prompt tokenization that reuses the tokens of recent prompts.

A chat's next turn is its last prompt plus a reply and a new message, and an agent resends
the same long system prompt and tools every time: tokenizing the whole text again costs
about 10 microseconds a token here (60 ms for a 6,000-token conversation), paid before the
first token of every request. llama.cpp splits a text at special tokens (`<|im_start|>`,
`<|im_end|>`, ...) before it splits words, and tokenizes each piece between them on its own,
so the tokens of a text that starts with an earlier prompt's text up to one of its special
tokens are that earlier prompt's tokens up to there, followed by the tokens of the rest.
`PromptTokenizer` keeps a few recent prompts with the places where a special token ends, and
tokenizes only what follows the last such place that a new prompt shares.

A prompt is kept only when its tokens' bytes spell its text exactly, so the places are
exact; a model whose tokenizer appends an end-of-sequence token never reuses anything.
"""

from __future__ import annotations

import bisect
import collections
from dataclasses import dataclass
from typing import Protocol

KEPT_PROMPTS = 16
"""Recent prompts kept (a few per slot of a busy runner): a small cost in memory."""


class Vocabulary(Protocol):
    """What the prompt tokenizer needs from a model (`runner.native.Model` provides it)."""

    @property
    def add_bos(self) -> bool: ...

    @property
    def add_eos(self) -> bool: ...

    def tokenize(
        self, text: str, *, add_special: bool, parse_special: bool = True
    ) -> list[int]: ...

    def piece(self, token: int) -> bytes: ...

    def is_special(self, token: int) -> bool: ...


@dataclass(frozen=True, slots=True)
class _Tokenized:
    """A prompt, its tokens, and where special tokens end in it (bytes, token counts)."""

    text: bytes
    tokens: list[int]
    cut_offsets: list[int]
    cut_counts: list[int]


class PromptTokenizer:
    """Tokenizes completion prompts (specials parsed, BOS added as the model asks)."""

    def __init__(self, vocab: Vocabulary, capacity: int = KEPT_PROMPTS) -> None:
        self._vocab = vocab
        self._capacity = capacity
        self._kept: collections.OrderedDict[bytes, _Tokenized] = collections.OrderedDict()
        self._enabled = not vocab.add_eos

    def tokenize(self, text: str) -> list[int]:
        data = text.encode("utf-8")
        base, offset, count = self._best_prefix(data)
        if base is None:
            tokens = self._vocab.tokenize(text, add_special=True, parse_special=True)
            self._remember(data, tokens, start=(0, 0), tokens_from=0)
            return tokens
        tail = self._vocab.tokenize(data[offset:].decode("utf-8"), add_special=False)
        tokens = base.tokens[:count] + tail
        head = bisect.bisect_right(base.cut_offsets, offset)
        self._remember(
            data,
            tokens,
            start=(offset, count),
            tokens_from=count,
            cuts=(base.cut_offsets[:head], base.cut_counts[:head]),
        )
        return tokens

    def _best_prefix(self, data: bytes) -> tuple[_Tokenized | None, int, int]:
        """The kept prompt sharing the longest run of whole special-token-ended pieces with
        `data`: it, and the byte offset and token count up to that place."""
        best: tuple[_Tokenized | None, int, int] = (None, 0, 0)
        for kept in reversed(self._kept.values()):
            shared = common_prefix_length(kept.text, data)
            at = bisect.bisect_right(kept.cut_offsets, shared) - 1
            if at >= 0 and kept.cut_offsets[at] > best[1]:
                best = (kept, kept.cut_offsets[at], kept.cut_counts[at])
        if best[0] is not None:
            self._kept.move_to_end(best[0].text)
        return best

    def _remember(
        self,
        data: bytes,
        tokens: list[int],
        *,
        start: tuple[int, int],
        tokens_from: int,
        cuts: tuple[list[int], list[int]] = ([], []),
    ) -> None:
        if not self._enabled:
            return
        offsets, counts = list(cuts[0]), list(cuts[1])
        position = start[0]
        vocab = self._vocab
        for index in range(tokens_from, len(tokens)):
            token = tokens[index]
            if index == 0 and vocab.add_bos and not data.startswith(vocab.piece(token)):
                continue  # the BOS the tokenizer added: no text of its own
            piece = vocab.piece(token)
            if data[position : position + len(piece)] != piece:
                return  # the bytes do not spell the text: places would be guesses
            position += len(piece)
            if vocab.is_special(token):
                offsets.append(position)
                counts.append(index + 1)
        if position != len(data):
            return
        self._kept[data] = _Tokenized(data, tokens, offsets, counts)
        self._kept.move_to_end(data)
        while len(self._kept) > self._capacity:
            self._kept.popitem(last=False)


def common_prefix_length(a: bytes, b: bytes) -> int:
    """How many leading bytes `a` and `b` share (compared a block at a time, in C)."""
    limit = min(len(a), len(b))
    low, step = 0, 4096
    while low < limit and a[low : low + step] == b[low : low + step]:
        low += step
    high = min(low + step, limit)
    while low < high:  # the first difference is in [low, high)
        middle = (low + high + 1) // 2
        if a[low:middle] == b[low:middle]:
            low = middle
        else:
            high = middle - 1
    return min(low, limit)
