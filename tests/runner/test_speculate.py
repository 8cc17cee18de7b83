"""The prompt-lookup drafter and its per-sequence back-off (pure: no model)."""

from __future__ import annotations

import pytest

from ollamapy.runner.speculate import (
    PAUSE_FIRST,
    PAUSE_MAX,
    DecodeCost,
    DraftPacer,
    NgramIndex,
    best_length,
    expected_gain,
)


class TestNgramIndex:
    def test_drafts_what_followed_the_suffix_earlier(self) -> None:
        index = NgramIndex(tokens=[1, 2, 3, 4, 5, 6, 9, 2, 3])
        assert index.draft(3) == [4, 5, 6]

    def test_the_draft_is_cut_at_the_limit_and_at_the_end_of_the_context(self) -> None:
        index = NgramIndex(tokens=[1, 2, 3, 4, 1, 2])
        assert index.draft(1) == [3]
        assert index.draft(10) == [3, 4, 1, 2]

    def test_the_longest_matching_ngram_wins(self) -> None:
        # "8 2 3" continues with 7; "2 3" alone last continued with 5.
        index = NgramIndex(tokens=[8, 2, 3, 7, 0, 2, 3, 5, 8, 2, 3])
        assert index.draft(1) == [7]

    def test_the_latest_occurrence_of_an_ngram_wins(self) -> None:
        index = NgramIndex(tokens=[2, 3, 4, 2, 3, 5, 2, 3])
        assert index.draft(1) == [5]

    def test_no_draft_without_an_earlier_occurrence(self) -> None:
        assert NgramIndex(tokens=[1, 2, 3, 4]).draft(4) == []

    def test_a_single_token_match_is_not_enough(self) -> None:
        assert NgramIndex(tokens=[1, 2, 3, 4, 5, 1]).draft(4) == []

    def test_appended_tokens_are_looked_up_too(self) -> None:
        index = NgramIndex(tokens=[10, 11, 12, 13, 14])
        index.extend([99, 10])
        assert index.draft(2) == []
        index.extend([11])
        assert index.draft(2) == [12, 13]
        assert len(index) == 8

    def test_a_repeating_pattern_drafts_its_continuation(self) -> None:
        index = NgramIndex(tokens=[7, 8, 7, 8, 7])
        assert index.draft(4) == [8, 7]

    def test_zero_limit_drafts_nothing(self) -> None:
        assert NgramIndex(tokens=[1, 2, 1, 2]).draft(0) == []

    def test_bad_sizes_are_refused(self) -> None:
        with pytest.raises(ValueError):
            NgramIndex(ngram_min=3, ngram_max=2)


class TestDraftLength:
    def test_a_draft_that_costs_more_than_it_saves_is_not_made(self) -> None:
        # one more token costs 0.6 of a step: a token accepted half the time loses
        assert best_length(0.5, 0.6, 16) == 0
        assert expected_gain(0.5, 0.6, 1) < 1.0

    def test_the_length_grows_with_the_acceptance_rate(self) -> None:
        lengths = [best_length(alpha, 0.6, 16) for alpha in (0.7, 0.9, 0.95, 0.99)]
        assert lengths == sorted(lengths)
        assert lengths[0] >= 1 and lengths[-1] >= 8

    def test_cheap_verification_drafts_long(self) -> None:
        assert best_length(0.9, 0.02, 16) > best_length(0.9, 0.6, 16)

    def test_the_length_never_exceeds_the_limit(self) -> None:
        assert best_length(0.999, 0.01, 5) == 5

    def test_gain_is_tokens_per_unit_of_cost(self) -> None:
        assert expected_gain(1.0, 0.5, 2) == pytest.approx(3 / 2)
        assert expected_gain(0.0, 0.5, 0) == 1.0


class TestDraftPacer:
    def test_off_when_draft_max_is_zero(self) -> None:
        assert DraftPacer(0).budget() == 0

    def test_accepted_drafts_lengthen_the_next_ones_up_to_draft_max(self) -> None:
        pacer = DraftPacer(16)
        seen = []
        for _ in range(30):
            seen.append(pacer.budget())
            pacer.record(seen[-1], seen[-1])
        assert seen == sorted(seen)
        assert seen[0] >= 1 and seen[-1] == 16

    def test_rejections_stop_drafting_then_it_probes_with_one_token(self) -> None:
        pacer = DraftPacer(16)
        while (length := pacer.budget()) > 1:
            pacer.record(length, 0)
        pacer.record(1, 0)
        while pacer.alpha > 0.5:  # a few more misses, until no length pays
            pacer.record(1, 0)
        assert pacer.budget() == 1  # a probe, then a pause
        pacer.record(1, 0)
        assert [pacer.budget() for _ in range(PAUSE_FIRST)] == [0] * PAUSE_FIRST
        assert pacer.budget() == 1
        pacer.record(1, 0)
        assert [pacer.budget() for _ in range(2 * PAUSE_FIRST)] == [0] * (2 * PAUSE_FIRST)

    def test_the_pause_is_bounded(self) -> None:
        pacer = DraftPacer(16, alpha=0.0)
        for _ in range(3000):
            if pacer.budget():
                pacer.record(1, 0)
        assert pacer.next_pause == PAUSE_MAX and pacer.pause <= PAUSE_MAX

    def test_an_accepted_probe_ends_the_pause(self) -> None:
        pacer = DraftPacer(16, alpha=0.3)
        assert pacer.budget() == 1
        pacer.record(1, 1)
        assert pacer.pause == 0 and pacer.next_pause == PAUSE_FIRST

    def test_only_tested_positions_move_the_estimate(self) -> None:
        a, b = DraftPacer(16), DraftPacer(16)
        a.record(8, 2)  # two accepted, the third rejected, five never tested
        b.record(3, 2)
        assert a.alpha == b.alpha

    def test_counts_drafted_and_accepted_tokens(self) -> None:
        pacer = DraftPacer(16)
        pacer.record(4, 4)
        pacer.record(8, 3)
        assert (pacer.drafted, pacer.accepted) == (12, 7)


class TestDecodeCost:
    def test_the_prior_until_the_batch_sizes_vary(self) -> None:
        cost = DecodeCost(prior=0.6)
        for _ in range(20):
            cost.add(1, 0.010)
        assert cost.share == 0.6

    def test_learns_the_share_of_one_more_token(self) -> None:
        cost = DecodeCost(prior=0.6)
        for tokens in [1, 2, 5, 1, 9, 3] * 5:
            cost.add(tokens, 0.008 + 0.002 * tokens)  # a = 8 ms, b = 2 ms
        assert cost.share == pytest.approx(0.2)

    def test_compute_bound_decodes_make_drafts_unprofitable(self) -> None:
        cost = DecodeCost(prior=0.1)
        for tokens in [1, 4, 2, 8] * 5:
            cost.add(tokens, 0.010 * tokens)
        assert cost.share == pytest.approx(1.0)
        assert best_length(0.9, cost.share, 16) == 0
