"""bench.speculate's pure parts: prompts, the summary, the goal ratios and the table."""

from __future__ import annotations

from bench import speculate as s


def samples(rate: float, text: str = "same", drafted: int = 0) -> list[s.Sample]:
    return [s.Sample(rate, 100, text, drafted, drafted // 2), s.Sample(rate + 2, 100, text)]


def section() -> dict[str, object]:
    runs = {
        "edit": {
            "ours": samples(20.0, drafted=40),
            "ours-no-drafts": samples(10.0),
            "llama-server": samples(8.0),
            "llama-server --spec-type ngram-simple": samples(16.0),
        },
        "story": {"ours": samples(9.8, "tale"), "ours-no-drafts": samples(10.0, "tale")},
    }
    out = s.summarize_runs(runs)
    out["ratios"] = s.ratios(out)
    out["load_avg"] = {"start": [1.0], "end": [2.0]}
    out["cpus"] = 2
    return out


def test_the_edit_prompt_holds_the_file_and_opens_the_answers_code_block() -> None:
    prompt = s.prompt_text("smollm2", "edit")
    assert s.SOURCE in prompt and prompt.endswith("<|im_start|>assistant\n```python\n")
    assert "total_value" in s.SOURCE and "stock_value" not in s.SOURCE


def test_ratios_compare_medians() -> None:
    ratios = section()["ratios"]
    assert ratios == {
        "edit_vs_no_drafts": 21.0 / 11.0,
        "edit_vs_llama_server_default": 21.0 / 9.0,
        "edit_vs_llama_server_best_ngram": 21.0 / 17.0,
        "story_vs_no_drafts": 10.8 / 11.0,
    }


def test_same_text_is_checked_between_our_two_sides() -> None:
    summary = section()
    assert summary["edit"]["same_text"] and summary["story"]["same_text"]  # type: ignore[index]
    runs = {"edit": {"ours": samples(1.0, "a"), "ours-no-drafts": samples(1.0, "b")}}
    assert s.summarize_runs(runs)["edit"]["same_text"] is False


def test_the_table_names_every_side_and_the_goals() -> None:
    text = s.table({"speculate": section()})
    assert "llama-server --spec-type ngram-simple" in text
    assert "(goal >= 0.97)" in text and "load average 1.00 at start" in text
