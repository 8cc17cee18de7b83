"""bench.cores' arithmetic: fractions of the rate alone, their sum and the two goals."""

from __future__ import annotations

import pytest
from bench.cores import render, summarize


def samples(
    on: tuple[float, ...], off: tuple[float, ...]
) -> dict[str, dict[str, dict[str, list[float]]]]:
    """Rates (smollm2 alone, gemma3 alone, smollm2 together, gemma3 together) per server."""

    def phases(r: tuple[float, ...]) -> dict[str, dict[str, list[float]]]:
        return {
            "alone": {"smollm2": [r[0]], "gemma3": [r[1]]},
            "together": {"smollm2": [r[2]], "gemma3": [r[3]]},
        }

    return {"on": phases(on), "off": phases(off)}


def test_the_issues_numbers_of_today_are_a_sum_of_0_32() -> None:
    result = summarize(samples((113.4, 62.2, 13.6, 12.3), (113.4, 62.2, 13.6, 12.3)))
    assert result["sum_of_fractions_off"] == pytest.approx(13.6 / 113.4 + 12.3 / 62.2)
    assert round(result["sum_of_fractions_off"], 2) == 0.32
    assert not result["meets_goal"]


def test_goal_met_when_shared_sum_reaches_0_9_and_alone_rates_hold() -> None:
    result = summarize(samples((100.0, 60.0, 50.0, 30.0), (101.0, 61.0, 10.0, 10.0)))
    assert result["sum_of_fractions_on"] == pytest.approx(1.0)
    assert result["alone_on_over_off"]["smollm2"] == pytest.approx(100 / 101)
    assert result["meets_goal"]
    slower = summarize(samples((90.0, 60.0, 50.0, 30.0), (100.0, 60.0, 10.0, 10.0)))
    assert not slower["meets_goal"]  # 0.90x alone breaks the 0.97 goal


def test_render_names_both_servers_and_the_load() -> None:
    result = summarize(samples((100.0, 60.0, 50.0, 30.0), (100.0, 60.0, 10.0, 10.0)))
    cores = {
        "cores": {
            **result,
            "load_avg": {"start": [9.5], "end": [8.0]},
            "cpus": 2,
            "repeat": 3,
            "window_s": 15.0,
        }
    }
    text = render(cores)
    assert "| on | smollm2 | 100.0 | 50.0 | 0.50 |" in text
    assert "load average 9.5 at start" in text
