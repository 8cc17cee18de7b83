"""From Ollama's sampling options to a plan for llama.cpp's native sampler chain.

The plan is a list of `SamplerStep`s: pure data that tests can check without llama.cpp,
and that the engine turns into one `llama_sampler_chain` per request (so sampling itself
runs in C, once per token, with no Python loop over the vocabulary).

Order, as llama.cpp's common sampler and Ollama use it:
grammar, penalties, top_k, typical, top_p, min_p, temperature, then the final pick
(dist with the seed, or greedy when temperature <= 0).

Notes:
* Options Ollama has removed (mirostat, penalize_newline, ...) are not options any more
  (`types.options.REMOVED_OPTIONS`): a request's are ignored before they get here.
* `num_predict`, `num_keep` and `stop` are handled by the engine, not the chain.

Speed: llama.cpp's penalties sampler does a hash lookup for every candidate, i.e. for the
whole vocabulary (~100 us/token for a 49k vocabulary). When the penalties can only lower
logits (repeat_penalty >= 1, frequency/presence >= 0) and a top-k (or greedy) follows,
a `top_k(k + last_n)` pre-filter goes first. It changes nothing: at most `last_n` tokens
are penalised, so a token outside the original top `k + last_n` still has `k`
unpenalised tokens above it and cannot reach the final top `k`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ollamapy.types.logprobs import TokenLogprob
from ollamapy.types.options import SamplingOptions

# llama.cpp's LLAMA_DEFAULT_SEED: the dist sampler then picks a random seed.
RANDOM_SEED = 0xFFFFFFFF
MIN_KEEP = 1

StepName = Literal[
    "grammar",
    "penalties",
    "top_k",
    "typical",
    "top_p",
    "min_p",
    "temp_ext",
    "dist",
    "greedy",
]


@dataclass(frozen=True, slots=True)
class SamplerStep:
    """One native sampler to create, with the arguments of its `llama_sampler_init_*`."""

    name: StepName
    params: dict[str, Any] = field(default_factory=dict)


def resolve_seed(seed: int) -> int:
    """Negative seeds mean "random"; others are folded into llama.cpp's uint32."""
    return RANDOM_SEED if seed < 0 else seed & 0xFFFFFFFF


def penalty_window(options: SamplingOptions, n_ctx: int) -> int:
    """How many recent tokens the penalties look at (-1 = the whole context, like Ollama)."""
    return n_ctx if options.repeat_last_n < 0 else options.repeat_last_n


def plan_sampler_chain(
    options: SamplingOptions, *, n_vocab: int, n_ctx: int, grammar: str | None = None
) -> list[SamplerStep]:
    """List the samplers (and their parameters) that implement `options`."""
    steps: list[SamplerStep] = []
    if grammar is not None:
        steps.append(SamplerStep("grammar", {"grammar": grammar, "root": "root"}))
    penalties = _penalties(options, n_vocab=n_vocab, n_ctx=n_ctx)
    steps += _prefilter(options, penalties, n_vocab=n_vocab) + penalties
    seed = resolve_seed(options.seed)
    if options.temperature <= 0:
        steps.append(SamplerStep("greedy"))
        return steps
    steps += _truncation(options)
    steps.append(SamplerStep("temp_ext", {"t": options.temperature, "delta": 0.0, "exponent": 1.0}))
    steps.append(SamplerStep("dist", {"seed": seed}))
    return steps


def _penalties(options: SamplingOptions, *, n_vocab: int, n_ctx: int) -> list[SamplerStep]:
    last_n = penalty_window(options, n_ctx)
    enabled = (
        options.repeat_penalty != 1.0
        or options.frequency_penalty != 0.0
        or options.presence_penalty != 0.0
    )
    if last_n == 0 or not enabled:
        return []
    params = {
        "n_vocab": n_vocab,
        "last_n": last_n,
        "repeat": options.repeat_penalty,
        "freq": options.frequency_penalty,
        "present": options.presence_penalty,
    }
    return [SamplerStep("penalties", params)]


def _prefilter(
    options: SamplingOptions, penalties: list[SamplerStep], *, n_vocab: int
) -> list[SamplerStep]:
    """The exact top-k shortcut in front of the penalties (see the module docstring)."""
    if not penalties or options.repeat_penalty < 1.0:
        return []
    if options.frequency_penalty < 0.0 or options.presence_penalty < 0.0:
        return []
    if options.temperature <= 0:
        keep = 1
    elif options.top_k <= 0:
        return []  # the whole distribution is sampled from
    else:
        keep = options.top_k
    k = keep + int(penalties[0].params["last_n"])
    return [SamplerStep("top_k", {"k": k})] if k <= n_vocab // 4 else []


def _truncation(options: SamplingOptions) -> list[SamplerStep]:
    """top_k, typical, top_p, min_p: each left out when its value disables it."""
    steps: list[SamplerStep] = []
    if options.top_k > 0:
        steps.append(SamplerStep("top_k", {"k": options.top_k}))
    if 0.0 < options.typical_p < 1.0:
        steps.append(SamplerStep("typical", {"p": options.typical_p, "min_keep": MIN_KEEP}))
    if 0.0 < options.top_p < 1.0:
        steps.append(SamplerStep("top_p", {"p": options.top_p, "min_keep": MIN_KEEP}))
    if options.min_p > 0.0:
        steps.append(SamplerStep("min_p", {"p": options.min_p, "min_keep": MIN_KEEP}))
    return steps


# --------------------------------------------------------------------------- logprobs


def token_logprob(
    logits: npt.NDArray[np.float32],
    token: int,
    top: int,
    piece: Callable[[int], bytes],
) -> TokenLogprob:
    """The chosen `token`'s log probability and the `top` most likely tokens', from raw
    `logits`: a log-softmax over the whole vocabulary before any sampler (no penalties,
    temperature or truncation), as Ollama's runners compute it. So the values depend on
    the prompt and the tokens before, never on the sampling options.

    Computed in float64 with the maximum subtracted first (stable for any logits); the
    top list is sorted most likely first, equal values by token id.
    """
    values = logits.astype(np.float64)
    shifted = values - values.max()
    logprobs = shifted - np.log(np.exp(shifted).sum())
    alternatives: tuple[TokenLogprob, ...] = ()
    if top > 0:
        k = min(top, len(logprobs))
        candidates = np.argpartition(-logprobs, k - 1)[:k]
        ranked = sorted(candidates.tolist(), key=lambda t: (-logprobs[t], t))
        alternatives = tuple(_entry(t, float(logprobs[t]), piece) for t in ranked)
    return _entry(token, float(logprobs[token]), piece, alternatives)


def _entry(
    token: int,
    logprob: float,
    piece: Callable[[int], bytes],
    top: tuple[TokenLogprob, ...] = (),
) -> TokenLogprob:
    """A token as Ollama reports it: its piece as text (invalid UTF-8 shown as U+FFFD,
    as Go's JSON encoder writes it) and its raw bytes."""
    data = piece(token)
    return TokenLogprob(data.decode("utf-8", errors="replace"), logprob, tuple(data), top)
