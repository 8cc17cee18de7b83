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

The same holds at the other end: a prompt that ends with an earlier prompt's text from just
after one of its special tokens (the special token itself shared too) ends with that earlier
prompt's tokens from there. A conversation cut to fit the context (its system messages, then
its newest turns) is an earlier prompt with a stretch taken out of the middle: it is spliced
from the two ends, and only the new text between them, if any, is tokenized.

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
        return self.tokenize_with_cuts(text)[0]

    def tokenize_with_cuts(self, text: str) -> tuple[list[int], list[int], list[int]]:
        """The prompt's tokens, and where special tokens end in it: byte offsets (UTF-8) and
        the token counts up to each (both empty when the tokens do not spell the text)."""
        tokens = self._tokenize(text)
        kept = self._kept.get(text.encode("utf-8"))
        if kept is None:
            return tokens, [], []
        return tokens, list(kept.cut_offsets), list(kept.cut_counts)

    def _tokenize(self, text: str) -> list[int]:
        data = text.encode("utf-8")
        splice = self._best_splice(data)
        if splice is None:
            tokens = self._vocab.tokenize(text, add_special=True, parse_special=True)
            self._remember(data, tokens, start=(0, 0), tokens_from=0)
            return tokens
        base = splice.base
        middle_end = len(data) - splice.suffix_bytes
        middle = self._vocab.tokenize(
            data[splice.head : middle_end].decode("utf-8"), add_special=False
        )
        head_tokens = base.tokens[: splice.head_count]
        tail_tokens = base.tokens[splice.tail_from :] if splice.suffix_bytes else []
        tokens = head_tokens + middle + tail_tokens
        at = bisect.bisect_right(base.cut_offsets, splice.head)
        tail = None
        if tail_tokens:
            offsets, counts = self._shifted_tail_cuts(
                splice, middle_end, len(tokens) - len(tail_tokens)
            )
            tail = (len(tail_tokens), splice.suffix_bytes, offsets, counts)
        self._remember(
            data,
            tokens,
            start=(splice.head, splice.head_count),
            tokens_from=splice.head_count,
            cuts=(base.cut_offsets[:at], base.cut_counts[:at]),
            tail=tail,
        )
        return tokens

    def _best_splice(self, data: bytes) -> _Splice | None:
        """Of the kept prompts, the one that gives `data` the most bytes of reused tokens,
        and how: its tokens up to a special token shared at the start, and (possibly) its
        tokens from a special token shared at the end."""
        best: _Splice | None = None
        for kept in reversed(self._kept.values()):
            splice = self._splice(kept, data)
            if splice is not None and (best is None or splice.reused > best.reused):
                best = splice
        if best is not None:
            self._kept.move_to_end(best.base.text)
        return best

    def _splice(self, kept: _Tokenized, data: bytes) -> _Splice | None:
        at = bisect.bisect_right(kept.cut_offsets, common_prefix_length(kept.text, data)) - 1
        if at < 0:
            return None
        head, head_count = kept.cut_offsets[at], kept.cut_counts[at]
        suffix = min(common_suffix_length(kept.text, data), len(data) - head, len(kept.text) - head)
        # The first special token wholly inside the shared end: what follows it is reused.
        first = bisect.bisect_left(kept.cut_offsets, len(kept.text) - suffix, lo=at + 1)
        for index in range(first, len(kept.cut_offsets)):
            offset, count = kept.cut_offsets[index], kept.cut_counts[index]
            if offset - len(self._vocab.piece(kept.tokens[count - 1])) >= len(kept.text) - suffix:
                return _Splice(kept, head, head_count, len(kept.text) - offset, count)
        return _Splice(kept, head, head_count, 0, len(kept.tokens))

    def _shifted_tail_cuts(
        self, splice: _Splice, middle_end: int, tail_start: int
    ) -> tuple[list[int], list[int]]:
        """The kept prompt's cut places in its reused end, moved to where they are in the
        new prompt."""
        base = splice.base
        if not splice.suffix_bytes:
            return [], []
        start = len(base.text) - splice.suffix_bytes
        first = bisect.bisect_right(base.cut_offsets, start)
        offsets = [o - start + middle_end for o in base.cut_offsets[first:]]
        counts = [c - splice.tail_from + tail_start for c in base.cut_counts[first:]]
        return offsets, counts

    def _remember(
        self,
        data: bytes,
        tokens: list[int],
        *,
        start: tuple[int, int],
        tokens_from: int,
        cuts: tuple[list[int], list[int]] = ([], []),
        tail: tuple[int, int, list[int], list[int]] | None = None,
    ) -> None:
        """Keep `data` with its cut places: `cuts` before `start` are known, the new tokens
        from `tokens_from` are spelled out to find theirs, and a reused `tail` (how many
        tokens and bytes, its places) needs no spelling: it is a kept prompt's own end."""
        if not self._enabled:
            return
        offsets, counts = list(cuts[0]), list(cuts[1])
        position = start[0]
        vocab = self._vocab
        end = len(tokens) - (tail[0] if tail is not None else 0)
        for index in range(tokens_from, end):
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
        if tail is not None:
            if position != len(data) - tail[1]:
                return
            offsets += tail[2]
            counts += tail[3]
            position = len(data)
        if position != len(data):
            return
        self._kept[data] = _Tokenized(data, tokens, offsets, counts)
        self._kept.move_to_end(data)
        while len(self._kept) > self._capacity:
            self._kept.popitem(last=False)


@dataclass(frozen=True, slots=True)
class _Splice:
    """How to make a prompt's tokens from a kept prompt: its first `head_count` tokens
    (spelling the first `head` bytes), new tokens for the middle, then its tokens from
    `tail_from` on (spelling the last `suffix_bytes` bytes; none when 0)."""

    base: _Tokenized
    head: int
    head_count: int
    suffix_bytes: int
    tail_from: int

    @property
    def reused(self) -> int:
        return self.head + self.suffix_bytes


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


def common_suffix_length(a: bytes, b: bytes) -> int:
    """How many trailing bytes `a` and `b` share (compared a block at a time, in C)."""
    limit = min(len(a), len(b))
    low, step = 0, 4096
    while (
        low + step <= limit
        and a[len(a) - low - step : len(a) - low] == b[len(b) - low - step : len(b) - low]
    ):
        low += step
    high = min(low + step, limit)
    while low < high:  # the answer is in [low, high]
        middle = (low + high + 1) // 2
        if a[len(a) - middle : len(a) - low] == b[len(b) - middle : len(b) - low]:
            low = middle
        else:
            high = middle - 1
    return low
