"""Speculative decoding by prompt lookup: drafts from a sequence's own context.

Text that copies its context (a file returned with an edit, an answer quoting its sources,
code that repeats a pattern) can be predicted without any model: when the last few tokens
also occurred earlier in the prompt or the output, the tokens that followed them there
are a good guess for what comes next. The engine appends such a draft behind a sequence's
next token in the same batch, gets logits for every drafted position from ONE decode, and
keeps the drafted tokens the model agrees with (see `engine.Engine._verify`).

Exactness does not depend on anything here: the engine samples every position with the
sequence's own sampler chain, in order, and stops at the first sampled token that differs
from the draft. Each emitted token is therefore drawn from the same distribution, by the
same sampler calls, as without a draft (greedy: the same argmax; sampled: for a draft
that is one fixed token, "sample from p and keep the draft if they agree" IS the standard
speculative rejection rule, accept with p(t), else draw from p without t, renormalised).
A draft only decides how much work one decode may do ahead.

* `NgramIndex`: for each n-gram size, the position that followed the n-gram's latest
  occurrence; O(1) per appended token and per lookup (no scan of the context).
* `DraftPacer`: per-sequence back-off. A rejected drafted token costs a position of
  compute in the batch (and its logits); when drafts keep failing (text with nothing to
  copy) the pacer drafts less and then pauses, so such text runs at plain speed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

NGRAM_MAX = 4
"""Longest n-gram looked up (longer matches are tried first: they predict better)."""
NGRAM_MIN = 2
"""Shortest n-gram looked up: single tokens (",", " the") match almost anywhere and
would mostly draft noise."""


@dataclass(slots=True)
class NgramIndex:
    """Where each recent n-gram of one token sequence was last followed by a token.

    `tokens` is the sequence seen so far (the prompt, then each generated token as it is
    appended). `_next[n][gram]` is the index in `tokens` of the token that followed the
    latest occurrence of `gram` that has a follower: the newest n-gram (the suffix) is
    entered only when the next token arrives, so a lookup of the current suffix finds an
    EARLIER occurrence, whose continuation is the draft.
    """

    ngram_min: int = NGRAM_MIN
    ngram_max: int = NGRAM_MAX
    tokens: list[int] = field(default_factory=list)
    _next: dict[int, dict[tuple[int, ...], int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= self.ngram_min <= self.ngram_max:
            raise ValueError("need 1 <= ngram_min <= ngram_max")
        initial, self.tokens = self.tokens, []
        self._next = {n: {} for n in range(self.ngram_min, self.ngram_max + 1)}
        self.extend(initial)

    def __len__(self) -> int:
        return len(self.tokens)

    def extend(self, new: Sequence[int]) -> None:
        """Append tokens, entering every n-gram that now has a follower."""
        tokens = self.tokens
        for token in new:
            end = len(tokens)  # index of `token`: the follower of the n-grams ending before it
            for n, table in self._next.items():
                if end >= n:
                    table[tuple(tokens[end - n : end])] = end
            tokens.append(token)

    def draft(self, limit: int) -> list[int]:
        """Up to `limit` tokens that followed the longest earlier occurrence of the current
        suffix (empty when no suffix of `ngram_min`..`ngram_max` tokens occurred before)."""
        if limit <= 0:
            return []
        tokens = self.tokens
        size = len(tokens)
        for n in range(min(self.ngram_max, size), self.ngram_min - 1, -1):
            follower = self._next[n].get(tuple(tokens[size - n :]))
            if follower is not None:
                return tokens[follower : follower + limit]
        return []


PAUSE_FIRST = 4
"""Steps without drafting after drafting stopped paying off, before a one-token probe."""
PAUSE_MAX = 256
"""Longest pause: even text with nothing to copy probes this often."""
CPU_DRAFT_COST = 0.6
"""What one more token in a sequence's decode costs, as a share of a one-token decode, on
a CPU: measured for SmolLM2-135M on 2 cores (a decode of 8 tokens takes ~5x one token;
the bench's 1- and 8-client aggregate rates say the same). CPU matmuls are compute-bound
at these sizes, so verifying a draft is far from free."""
GPU_DRAFT_COST = 0.1
"""The same on a GPU, where a few more rows cost little next to reading the weights."""
FIRST_ACCEPTANCE = 0.8
"""The acceptance rate a sequence starts from: high enough to try its first drafts."""
LEARNING_RATE = 0.15
"""Weight of one observed drafted position in the acceptance estimate."""


@dataclass(slots=True)
class DecodeCost:
    """What one more token in a decode costs, as a share of a one-token decode, learned
    from the engine's own decodes: a least-squares line `time = a + b * tokens` over the
    generation steps (exponentially weighted, so it follows the machine's load), and the
    share is b / (a + b). Until the steps have varied enough in size to fit a line, it is
    the `prior` (`CPU_DRAFT_COST` or `GPU_DRAFT_COST`). On 2 busy CPU cores with one
    thread it comes out near 1 (a batch costs what its tokens cost one by one, so drafts
    cannot pay); on a GPU near 0.
    """

    prior: float = CPU_DRAFT_COST
    decay: float = 0.98
    fixed: bool = False
    """Always the prior (tests that must not depend on timing)."""
    _sums: list[float] = field(default_factory=lambda: [0.0] * 5)

    def add(self, tokens: int, seconds: float) -> None:
        """Record one decode of `tokens` tokens (generation only, no prompt chunk)."""
        sums, d, n = self._sums, self.decay, float(tokens)
        for i, value in enumerate((1.0, n, n * n, seconds, n * seconds)):
            sums[i] = d * sums[i] + value

    @property
    def share(self) -> float:
        if self.fixed:
            return self.prior
        s0, s1, s2, t0, t1 = self._sums
        spread = s0 * s2 - s1 * s1
        if s0 < 4 or spread < 0.25 * s0 * s0:  # sizes too alike (variance < 0.25)
            return self.prior
        b = (s0 * t1 - s1 * t0) / spread
        a = (t0 - b * s1) / s0
        if a + b <= 0:
            return self.prior
        return min(max(b / (a + b), 0.01), 1.0)


def expected_gain(alpha: float, cost: float, length: int) -> float:
    """Tokens per unit of decode cost when drafting `length` tokens, each accepted with
    probability `alpha` given the ones before it: (1 + alpha + ... + alpha^length) over
    (1 + cost * length). 1.0 is what decoding without a draft gives."""
    tokens = sum(alpha**i for i in range(length + 1))
    return tokens / (1 + cost * length)


def best_length(alpha: float, cost: float, limit: int) -> int:
    """The draft length (0..limit) with the highest `expected_gain`; 0 when none beats 1."""
    best, best_gain = 0, 1.0
    for length in range(1, limit + 1):
        gain = expected_gain(alpha, cost, length)
        if gain > best_gain:
            best, best_gain = length, gain
        elif alpha**length < 0.05:
            break  # further terms add almost nothing
    return best


@dataclass(slots=True)
class DraftPacer:
    """How many tokens one sequence should draft now, learned from its own acceptance.

    `alpha` estimates the chance that a drafted token is accepted when the ones before it
    were: each verified draft moves it towards 1 for every accepted position and towards
    0 for the first rejected one (later positions were never tested). The draft length is
    the one with the best expected tokens per unit of decode cost (`best_length`, with
    `cost` the price of one more token in a decode). When no length pays, drafting pauses
    for `PAUSE_FIRST` steps, then one token is drafted as a probe; each failed probe
    doubles the pause (up to `PAUSE_MAX`). So copying text drafts long, text with nothing
    to copy pays for a one-token probe only every so many steps.
    """

    draft_max: int
    cost: float = CPU_DRAFT_COST
    alpha: float = FIRST_ACCEPTANCE
    pause: int = 0
    next_pause: int = PAUSE_FIRST
    drafted: int = 0
    accepted: int = 0

    def budget(self) -> int:
        """The longest draft worth trying this step (0: don't draft); counts a paused step."""
        if self.draft_max <= 0:
            return 0
        if self.pause > 0:
            self.pause -= 1
            return 0
        length = best_length(self.alpha, self.cost, self.draft_max)
        if length == 0:
            self.pause = self.next_pause
            self.next_pause = min(2 * self.next_pause, PAUSE_MAX)
            return 1  # the probe
        return length

    def record(self, drafted: int, accepted: int) -> None:
        """Learn from one verified draft of `drafted` tokens, `accepted` of them kept."""
        self.drafted += drafted
        self.accepted += accepted
        keep = 1 - LEARNING_RATE
        for _ in range(accepted):
            self.alpha = keep * self.alpha + LEARNING_RATE
        if accepted < drafted:
            self.alpha = keep * self.alpha
        if accepted:
            self.pause, self.next_pause = 0, PAUSE_FIRST
