"""`python -m bench overhead` and `python -m bench decode`: their pure parts, and one quick
run of each code path against our server. Nothing here asserts a speed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from bench.servers import start_ours

from bench import decode, overhead, report, results, run, stats
from tests.conftest import bundled_model_file


def test_a_conversation_is_a_system_prompt_then_alternating_turns() -> None:
    messages = overhead.conversation(5)
    assert [m["role"] for m in messages] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
    ]
    assert "Conversation 5." in messages[0]["content"]
    assert len({m["content"] for m in messages}) == len(messages)  # no repeated turn


def test_messages_stay_short_enough_for_500_to_fit_8192_tokens() -> None:
    # ~4 characters per token: 40 characters is about 10 tokens, 15 with ChatML's markup
    assert max(len(overhead.message_text(500, i)) for i in range(500)) <= 40


@pytest.mark.parametrize("n", [2, 3])
def test_a_follow_up_adds_one_user_message_and_keeps_the_alternation(n: int) -> None:
    messages = overhead.conversation(n)
    first, second = overhead.follow_up(messages, 0), overhead.follow_up(messages, 1)
    assert first[: len(messages)] == messages  # the cached conversation is a prefix
    assert first[-1]["role"] == "user" and first[-2]["role"] == "assistant"
    assert first[-1] != second[-1]  # every follow-up is new to the cache


def test_the_overhead_is_ttft_minus_the_engine_prompt_time() -> None:
    assert overhead.Reading(0.05, 0.03, 12).overhead_s == pytest.approx(0.02)


def _rows(*medians_ms: float) -> list[dict[str, Any]]:
    """Measured sizes 2 and 100 with these median overheads (and nothing else measured)."""
    return [
        {
            "messages": n,
            "overhead_s": stats.summarize([m / 1000]),
            "ttft_s": None,
            "prompt_eval_s": None,
            "warm_prompt_tokens": None,
        }
        for n, m in zip((2, 100), medians_ms, strict=False)
    ]


def test_the_overhead_goal_needs_both_low_and_flat() -> None:
    assert overhead.verdict(_rows(5, 6.5))["meets_goal"] is True
    assert overhead.verdict(_rows(5, 8))["meets_goal"] is False  # 3 ms apart
    assert overhead.verdict(_rows(9, 11))["meets_goal"] is False  # over 10 ms
    assert overhead.verdict(_rows(2, 330))["spread_ms"] == pytest.approx(328)


def test_decode_rates_engine_and_client() -> None:
    s = decode.Stream(
        eval_count=101, eval_duration_s=1.0, prompt_eval_count=30, first_text_s=0.5, done_s=2.5
    )
    assert s.engine_tps == pytest.approx(101)
    assert s.client_tps == pytest.approx(50)  # 100 tokens after the first, over 2 s


def test_decode_pairs_ratio_per_pair_and_median() -> None:
    streams = [decode.Stream(128, 1.28 / f, 20, 0.1, 0.1 + 1.27 / f) for f in (0.9, 1.0, 0.95)]
    rows = decode.pair_rows(streams, [100.0, 100.0, 100.0])
    assert [round(r["engine_ratio"], 3) for r in rows] == [0.9, 1.0, 0.95]
    summary = decode.summarize_pairs(rows)
    assert summary["engine_ratio"]["median"] == pytest.approx(0.95)
    assert summary["client_ratio"]["median"] == pytest.approx(0.95)
    assert summary["meets_goal"] is False


def test_llama_bench_tg_is_read_from_its_json() -> None:
    entries = [{"n_prompt": 0, "n_gen": 128, "n_depth": 40, "avg_ts": 99.5, "samples_ts": [99.5]}]
    assert decode.parse_tg(entries) == 99.5
    with pytest.raises(ValueError, match="no tg entry"):
        decode.parse_tg([{"n_prompt": 512, "n_gen": 0, "avg_ts": 1.0}])


def test_the_report_shows_both_figures() -> None:
    r = results.new_result("2025-01-02T03:04:05+00:00", "box", {}, {})
    r["overhead"] = {
        "variants": {
            "fits": {
                "num_ctx": 8192,
                "rows": _rows(12, 330),
                "verdict": overhead.verdict(_rows(12, 330)),
            }
        }
    }
    rows = decode.pair_rows([decode.Stream(128, 1.4, 20, 0.1, 1.5)], [100.0])
    r["decode"] = {"pairs": rows, "summary": decode.summarize_pairs(rows), "n_predict": 128}
    detail = {row[0]: row[1] for row in report.detail_rows(r)}
    key = "Server overhead before the first token, 100 messages, fits (num_ctx 8192) (ms)"
    assert detail[key] == "330 (330–330)"
    ratio = detail[
        "Streamed decode / llama-bench tg128, eval_count/eval_duration, median of 1 pairs (range)"
    ]
    assert ratio.startswith("**0.91**")
    assert "| median |" in decode.table(r) and "| fits (8192) | 2 |" in overhead.table(r)


def test_the_suite_takes_both_as_opt_in_flags() -> None:
    ns = run.parse_args(["--overhead", "--decode"])
    assert ns.overhead and ns.decode
    assert not run.parse_args([]).overhead


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_overhead_command_runs_both_variants(tmp_path: Path) -> None:
    """`python -m bench overhead` end to end on tiny conversations; 20 messages outgrow
    a 256-token context, so the truncating variant walks back."""
    out = tmp_path / "overhead.json"
    argv = ["overhead", "--model", str(bundled_model_file("smollm2")), "--sizes", "2,20"]
    argv += ["--repeat", "1", "--num-ctx", "512", "--truncating-ctx", "256", "--json", str(out)]
    assert run.main(argv) == 0
    variants = json.loads(out.read_text())["overhead"]["variants"]
    assert [v["num_ctx"] for v in variants.values()] == [512, 256]
    for variant in variants.values():
        assert [row["messages"] for row in variant["rows"]] == [2, 20]
        for row in variant["rows"]:
            assert row["ttft_s"]["median"] > 0 and row["overhead_s"]["n"] == 1
    fits, cut = variants["fits"]["rows"][1], variants["truncating"]["rows"][1]
    assert cut["warm_prompt_tokens"] < 256 < fits["warm_prompt_tokens"]


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_decode_pairs_alternate_with_the_reference_at_the_prompt_depth(tmp_path: Path) -> None:
    """The pair loop against our server, with a stand-in for llama-bench (this test must
    not need the reference build): it is asked at our prompt's depth, once per pair."""
    model = bundled_model_file("smollm2")
    depths: list[int] = []

    def tg_rate(depth: int) -> float:
        depths.append(depth)
        return 100.0

    server = start_ours(tmp_path / "models", 1, tmp_path)
    try:
        body = {"model": decode.MODEL, "modelfile": f"FROM {model}", "stream": False}
        httpx.post(server.base_url + "/api/create", json=body, timeout=60).raise_for_status()
        section = decode.measure(server.base_url, tg_rate, pairs=2, n_predict=4, threads=1)
    finally:
        server.stop()
    assert depths == [section["prompt_tokens"]] * 2 and section["prompt_tokens"] > 10
    assert len(section["pairs"]) == 2
    for row in section["pairs"]:
        assert 0 < row["eval_count"] <= 4 and row["llama_bench_tps"] == 100.0
        assert row["engine_ratio"] == pytest.approx(row["engine_tps"] / 100.0)


def test_only_pairs_both_of_whose_runs_were_quiet_count_as_clean() -> None:
    streams = [decode.Stream(128, 1.28 / f, 20, 0.1, 1.0) for f in (0.5, 0.95, 0.99)]
    rows = decode.pair_rows(streams, [100.0] * 3, [0.4, 0.02, 0.05], [0.01, 0.03, None])
    summary = decode.summarize_pairs(rows)
    assert summary["clean_pairs"] == 1  # the first had a busy neighbour, the last unknown
    assert summary["clean_engine_ratio"]["median"] == pytest.approx(0.95)


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_decode_parts_measures_every_layer_and_the_samplers() -> None:
    from bench import decode_parts

    model = bundled_model_file("smollm2")
    samples = decode_parts.measure(model, threads=1, rounds=1, n=2)
    assert set(samples) == set(decode_parts.MODES)
    assert all(len(v) == 1 and v[0] > 0 for v in samples.values()), samples
    assert "| engine |" in decode_parts.table(samples)
    costs = decode_parts.sampler_costs(model, threads=1)
    assert set(costs) == set(decode_parts.SAMPLERS) and all(c > 0 for c in costs.values())
