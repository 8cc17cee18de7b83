"""Pure rules of the engine: prefix matching, prompt truncation, num_keep, KV copies."""

from __future__ import annotations

import pytest

from ollamapy.runner.engine import (
    common_prefix,
    effective_num_keep,
    fit_prompt,
    min_copied_prefix,
)


@pytest.mark.parametrize(
    ("a", "b", "n"),
    [([], [1], 0), ([1, 2, 3], [1, 2, 4], 2), ([1, 2], [1, 2, 3], 2), ([5], [6], 0)],
)
def test_common_prefix(a: list[int], b: list[int], n: int) -> None:
    assert common_prefix(a, b) == n


@pytest.mark.parametrize(
    ("prompt", "keep", "n_ctx", "expected"),
    [
        ([1, 2, 3], 1, 8, [1, 2, 3]),
        ([1, 2, 3, 4, 5, 6], 2, 4, [1, 2, 5, 6]),
        ([1, 2, 3, 4, 5, 6], 0, 4, [3, 4, 5, 6]),
    ],
)
def test_fit_prompt(prompt: list[int], keep: int, n_ctx: int, expected: list[int]) -> None:
    assert fit_prompt(prompt, keep, n_ctx) == expected


@pytest.mark.parametrize(
    ("keep", "prompt_len", "n_ctx", "expected"),
    [(4, 10, 100, 4), (-1, 10, 100, 10), (50, 10, 100, 10), (-1, 200, 100, 99), (0, 5, 9, 0)],
)
def test_effective_num_keep(keep: int, prompt_len: int, n_ctx: int, expected: int) -> None:
    assert effective_num_keep(keep, prompt_len, n_ctx) == expected


def test_a_kv_copy_must_save_more_prompt_tokens_as_the_context_grows() -> None:
    assert min_copied_prefix(512) == 16
    assert min_copied_prefix(2048) == 16
    assert min_copied_prefix(32768) == 128
