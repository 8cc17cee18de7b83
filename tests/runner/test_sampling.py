"""The option -> sampler-chain plan, checked without llama.cpp."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from ollamapy.runner.sampling import (
    RANDOM_SEED,
    SamplerStep,
    plan_sampler_chain,
    resolve_seed,
    token_logprob,
)
from ollamapy.types.options import SamplingOptions, validate_options

N_VOCAB = 1000
N_CTX = 2048


def names(**options: Any) -> list[str]:
    plan = plan_sampler_chain(SamplingOptions(**options), n_vocab=N_VOCAB, n_ctx=N_CTX)
    return [step.name for step in plan]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        # Ollama's current defaults: no penalties (repeat_penalty 1.0), top_k 40,
        # top_p 0.9, temperature, dist
        ({}, ["top_k", "top_p", "temp_ext", "dist"]),
        ({"temperature": 0}, ["greedy"]),
        # a penalty gets the exact top_k(k + 64) pre-filter in front of it
        ({"repeat_penalty": 1.1}, ["top_k", "penalties", "top_k", "top_p", "temp_ext", "dist"]),
        ({"temperature": 0, "repeat_penalty": 1.1}, ["top_k", "penalties", "greedy"]),
        ({"repeat_penalty": 1.1, "repeat_last_n": 0}, ["top_k", "top_p", "temp_ext", "dist"]),
        (
            {"top_k": 0, "top_p": 1.0, "repeat_penalty": 1.0},
            ["temp_ext", "dist"],
        ),
        (
            {"typical_p": 0.5, "min_p": 0.05},
            ["top_k", "typical", "top_p", "min_p", "temp_ext", "dist"],
        ),
        # presence/frequency alone still enable the penalties sampler
        (
            {"repeat_penalty": 1.0, "presence_penalty": 0.5, "temperature": 0},
            ["top_k", "penalties", "greedy"],
        ),
        # no pre-filter when a penalty can raise logits or the whole distribution is needed
        ({"presence_penalty": -0.5}, ["penalties", "top_k", "top_p", "temp_ext", "dist"]),
        ({"repeat_penalty": 0.9}, ["penalties", "top_k", "top_p", "temp_ext", "dist"]),
        ({"top_k": 0, "repeat_penalty": 1.1}, ["penalties", "top_p", "temp_ext", "dist"]),
        (
            {"repeat_last_n": -1, "repeat_penalty": 1.1},
            ["penalties", "top_k", "top_p", "temp_ext", "dist"],
        ),
    ],
)
def test_plan_order(options: dict[str, Any], expected: list[str]) -> None:
    assert names(**options) == expected


def test_plan_parameters() -> None:
    options = SamplingOptions(
        seed=42,
        top_k=7,
        top_p=0.5,
        min_p=0.1,
        temperature=0.3,
        repeat_last_n=-1,
        repeat_penalty=1.2,
        frequency_penalty=0.1,
        presence_penalty=0.2,
    )
    plan = plan_sampler_chain(options, n_vocab=N_VOCAB, n_ctx=N_CTX)
    assert plan == [  # 7 + 2048 is too big for a pre-filter over 1000 tokens
        SamplerStep(
            "penalties",
            {"n_vocab": N_VOCAB, "last_n": N_CTX, "repeat": 1.2, "freq": 0.1, "present": 0.2},
        ),
        SamplerStep("top_k", {"k": 7}),
        SamplerStep("top_p", {"p": 0.5, "min_keep": 1}),
        SamplerStep("min_p", {"p": 0.1, "min_keep": 1}),
        SamplerStep("temp_ext", {"t": 0.3, "delta": 0.0, "exponent": 1.0}),
        SamplerStep("dist", {"seed": 42}),
    ]


def test_prefilter_size() -> None:
    plan = plan_sampler_chain(
        SamplingOptions(top_k=10, repeat_last_n=30, repeat_penalty=1.1),
        n_vocab=N_VOCAB,
        n_ctx=N_CTX,
    )
    assert plan[0] == SamplerStep("top_k", {"k": 40})
    greedy = plan_sampler_chain(
        SamplingOptions(temperature=0, repeat_penalty=1.1), n_vocab=N_VOCAB, n_ctx=N_CTX
    )
    assert greedy[0] == SamplerStep("top_k", {"k": 65})


def test_grammar_comes_first() -> None:
    plan = plan_sampler_chain(
        SamplingOptions(temperature=0), n_vocab=N_VOCAB, n_ctx=N_CTX, grammar="root ::= x"
    )
    assert plan[0] == SamplerStep("grammar", {"grammar": "root ::= x", "root": "root"})


def test_options_ollama_removed_change_nothing() -> None:
    removed = {"mirostat": 2, "mirostat_tau": 3.0, "mirostat_eta": 0.2, "penalize_newline": False}
    options = SamplingOptions.from_options(validate_options({**removed, "seed": 5}))
    assert options == SamplingOptions(seed=5)
    assert [step.name for step in plan_sampler_chain(options, n_vocab=N_VOCAB, n_ctx=N_CTX)] == [
        "top_k",
        "top_p",
        "temp_ext",
        "dist",
    ]


@pytest.mark.parametrize(
    ("seed", "expected"), [(-1, RANDOM_SEED), (-7, RANDOM_SEED), (0, 0), (2**32 + 3, 3)]
)
def test_resolve_seed(seed: int, expected: int) -> None:
    assert resolve_seed(seed) == expected


# ----------------------------------------------------------------------------- logprobs

PIECES = [b"a", b"b", b"\xe2\x82", b"c"]


def test_logprobs_are_a_log_softmax_over_the_whole_vocabulary() -> None:
    logits = np.array([1.0, 3.0, 2.0, 3.0], dtype=np.float32)
    entry = token_logprob(logits, 0, 0, PIECES.__getitem__)
    norm = math.log(sum(math.exp(x) for x in (1.0, 3.0, 2.0, 3.0)))
    assert entry.token == "a" and entry.bytes == (97,)
    assert entry.logprob == pytest.approx(1.0 - norm, abs=1e-12)
    assert entry.top_logprobs == ()


def test_top_logprobs_are_sorted_ties_by_token_id_and_capped_at_the_vocabulary() -> None:
    logits = np.array([1.0, 3.0, 2.0, 3.0], dtype=np.float32)
    top = token_logprob(logits, 2, 3, PIECES.__getitem__).top_logprobs
    assert [t.token for t in top] == ["b", "c", "\ufffd"]
    assert top[0].logprob == top[1].logprob > top[2].logprob
    assert top[2].bytes == (0xE2, 0x82)  # raw bytes, text with U+FFFD as Go writes it
    assert len(token_logprob(logits, 2, 20, PIECES.__getitem__).top_logprobs) == 4


def test_logprobs_are_stable_for_huge_logits() -> None:
    logits = np.array([1e30, 0.0, -1e30, 1e30 - 1e24], dtype=np.float32)
    entry = token_logprob(logits, 0, 2, PIECES.__getitem__)
    assert math.isfinite(entry.logprob) and entry.logprob <= 0.0
