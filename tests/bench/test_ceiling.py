"""The engine ceiling (`bench.ceiling`) on the bundled model: it does a whole round."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing

import pytest
from bench.ceiling import Ceiling
from bench.measure import counting_prompt

from tests.conftest import bundled_model_file

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ceiling() -> Iterator[Ceiling]:
    with closing(Ceiling(bundled_model_file("smollm2"), n_seq=3, num_ctx=256, threads=1)) as c:
        yield c


def test_a_round_generates_n_predict_tokens_for_every_prompt(ceiling: Ceiling) -> None:
    prompts = [counting_prompt(1000 + 100 * i, 6) for i in range(3)]
    generated, seconds = ceiling.round(prompts, 5)
    assert generated == 15 and seconds > 0


def test_prompts_longer_than_a_batch_are_spread_over_several_decodes() -> None:
    prompts = [counting_prompt(2000 + 100 * i, 12) for i in range(2)]  # ~50 tokens each
    small_batches = Ceiling(
        bundled_model_file("smollm2"), n_seq=2, num_ctx=256, threads=1, n_batch=16
    )
    with closing(small_batches) as small:
        assert small.round(prompts, 4)[0] == 8


def test_a_round_starts_from_an_empty_cache(ceiling: Ceiling) -> None:
    """Every round clears all sequences first, so the same round can run twice."""
    prompts = [counting_prompt(3000, 40)]
    assert ceiling.round(prompts, 3)[0] == 3
    assert ceiling.round(prompts, 3)[0] == 3


def test_more_prompts_than_sequences_is_refused(ceiling: Ceiling) -> None:
    with pytest.raises(ValueError, match="4 prompts for 3 sequences"):
        ceiling.round(["a"] * 4, 1)
