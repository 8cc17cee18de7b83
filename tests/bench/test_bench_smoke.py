"""The bench suite's pure parts on tiny inputs, and one end-to-end smoke run of our server.

Nothing here needs the llama.cpp reference build, and nothing asserts a speed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from bench import machine, measure, reference, report, results, run, servers, stats
from tests.conftest import bundled_model_file


def _summary(*values: float) -> dict[str, Any]:
    s = stats.summarize(values)
    assert s is not None
    return s


def _filled() -> dict[str, Any]:
    """A result with every figure present and easy numbers."""
    r = results.new_result("2025-01-02T03:04:05+00:00", "box", {"cpu_model": "X"}, {"model": "m"})
    r["raw"] = {"pp_tps": _summary(1000, 1100, 900), "tg_tps": _summary(100)}
    r["ours"].update(
        prompt_eval_tps=_summary(900),
        decode_tps=_summary(90, 95, 80),
        ttft_s=_summary(0.5),
        load_s=_summary(1.0),
    )
    r["ours"]["aggregate_tps"] = {"1": _summary(80), "2": _summary(150)}
    r["ours"]["prefix_cache"] = {"turn1_ttft_s": _summary(2.0), "turn2_ttft_s": _summary(0.5)}
    r["ours"]["shared_prefix_tps"] = {"4": _summary(120)}
    r["ours"]["aggregate_stream_tps"] = {"2": _summary(140)}
    r["llama_server"] = {
        "prompt_eval_tps": _summary(1000),
        "decode_tps": _summary(100),
        "ttft_s": _summary(0.25),
        "load_s": _summary(0.5),
        "aggregate_tps": {"1": _summary(100), "2": _summary(200)},
        "shared_prefix_tps": {"4": _summary(60)},
        "aggregate_stream_tps": {"2": _summary(200)},
    }
    r["ceiling"] = {"aggregate_tps": {"1": _summary(100), "2": _summary(250)}}
    r["ratios"] = results.compute_ratios(r)
    return r


def test_summarize_median_min_max() -> None:
    s = _summary(3, 1, 2)
    assert (s["median"], s["min"], s["max"], s["n"]) == (2, 1, 3, 3)
    assert stats.summarize([None, None]) is None
    assert stats.summarize([None, 4.0])["median"] == 4.0  # type: ignore[index]


def test_ratio_and_rate_math() -> None:
    assert stats.ratio(90, 100) == pytest.approx(0.9)
    assert (
        stats.ratio(None, 1) is None and stats.ratio(1, None) is None and stats.ratio(1, 0) is None
    )
    assert stats.rate(128, 2.0) == 64
    assert stats.rate(128, 0) is None and stats.rate(None, 1) is None


def test_compute_ratios() -> None:
    ratios = _filled()["ratios"]
    assert ratios["pp_vs_raw"] == pytest.approx(0.9)
    assert ratios["tg_vs_raw"] == pytest.approx(0.9)
    assert ratios["decode_tps_vs_server"] == pytest.approx(0.9)
    assert ratios["ttft_s_vs_server"] == pytest.approx(2.0)
    assert ratios["aggregate_1_vs_server"] == pytest.approx(0.8)
    assert ratios["aggregate_2_vs_server"] == pytest.approx(0.75)
    assert ratios["prefix_turn2_vs_turn1"] == pytest.approx(0.25)
    assert ratios["shared_prefix_4_vs_server"] == pytest.approx(2.0)
    assert ratios["aggregate_stream_2_vs_server"] == pytest.approx(0.7)
    assert ratios["aggregate_2_vs_ceiling"] == pytest.approx(0.6)
    assert ratios["server_aggregate_2_vs_ceiling"] == pytest.approx(0.8)


def test_no_ceiling_ratio_where_the_ceiling_was_not_measured() -> None:
    r = _filled()
    r["ceiling"]["aggregate_tps"].pop("2")
    ratios = results.compute_ratios(r)
    assert ratios["aggregate_1_vs_ceiling"] == pytest.approx(0.8)
    assert "aggregate_2_vs_ceiling" not in ratios
    r.pop("ceiling")
    assert not [k for k in results.compute_ratios(r) if k.endswith("_vs_ceiling")]


def test_ratios_without_reference() -> None:
    r = _filled()
    r["raw"] = r["llama_server"] = None
    ratios = results.compute_ratios(r)
    assert ratios["pp_vs_raw"] is None
    assert ratios["aggregate_1_vs_server"] is None
    assert ratios["prefix_turn2_vs_turn1"] == pytest.approx(0.25)


def test_results_round_trip(tmp_path: Path) -> None:
    r = _filled()
    path = results.write(r, tmp_path / "out" / "x.json")
    assert results.read(path) == json.loads(json.dumps(r))
    assert r["not_measured"]["pull_vs_skopeo"] == results.NOT_MEASURED


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.pop("machine"), "missing key machine"),
        (lambda r: r.update(schema="other/9"), "schema"),
        (lambda r: r["ours"].update(decode_tps={"median": 1}), "ours.decode_tps: missing min"),
        (lambda r: r["ours"].update(ttft_s={**_summary(1), "min": 5}), "min <= median"),
        (lambda r: r["raw"].update(pp_tps=3), "raw.pp_tps: expected a summary"),
        (lambda r: r["llama_server"]["aggregate_tps"].update(x=None), "not a client count"),
        (
            lambda r: r["ceiling"]["aggregate_tps"].update({"2": {"median": 1}}),
            "ceiling.aggregate_tps.2: missing min",
        ),
    ],
)
def test_validate_rejects(mutate: Any, message: str, tmp_path: Path) -> None:
    r = _filled()
    mutate(r)
    assert any(message in e for e in results.validate(r))
    with pytest.raises(ValueError, match="invalid bench result"):
        results.write(r, tmp_path / "bad.json")


def test_render_table() -> None:
    text = report.render(_filled())
    assert (
        "| tg (decode, at the prompt's depth) vs llama-bench | **0.90** "
        "| 90.00 (80.00–95.00) | 100 (100–100) | higher |" in text
    )
    assert "Aggregate decode, 2 clients (t/s) vs llama-server | **0.75**" in text
    assert "Aggregate decode, 2 clients streaming (t/s) vs llama-server | **0.70** | 140" in text
    assert "4 clients sharing a system prompt (t/s) vs llama-server | **2.00** | 120" in text
    assert (
        "| Aggregate, 2 clients (t/s) vs the engine ceiling (llama-server: 0.80) | **0.60** "
        "| 150 (150–150) | 250 (250–250) | higher |" in text
    )
    assert "not measured yet" in text
    assert (
        report.fmt(None) == "—" and report.fmt(0.1234) == "0.123" and report.fmt(1234.5) == "1234"
    )


def test_parse_llama_bench() -> None:
    entries = [
        {
            "n_prompt": 512,
            "n_gen": 0,
            "avg_ts": 1000.0,
            "samples_ts": [990.0, 1010.0],
            "build_commit": "unknown",
            "n_threads": 2,
        },
        {"n_prompt": 0, "n_gen": 128, "avg_ts": 100.0, "samples_ts": [100.0]},
    ]
    parsed = reference.parse_llama_bench(entries)
    assert parsed["pp_tps"]["median"] == 1000.0 and parsed["tg_tps"]["n"] == 1
    assert parsed["n_prompt"] == 512 and parsed["llama_bench"]["n_threads"] == 2


def test_parse_llama_bench_takes_pp_at_depth_0_and_tg_at_the_prompt_depth() -> None:
    entries = [
        {"n_prompt": 512, "n_gen": 0, "n_depth": 0, "samples_ts": [300.0]},
        {"n_prompt": 0, "n_gen": 128, "n_depth": 0, "samples_ts": [145.0]},
        {"n_prompt": 512, "n_gen": 0, "n_depth": 512, "samples_ts": [250.0]},
        {"n_prompt": 0, "n_gen": 128, "n_depth": 512, "samples_ts": [112.0]},
    ]
    parsed = reference.parse_llama_bench(entries)
    assert parsed["pp_tps"]["median"] == 300.0
    assert parsed["tg_tps"]["median"] == 112.0 and parsed["tg_depth"] == 512


def test_commit_from_changelog() -> None:
    text = (
        "## [Unreleased]\n\n## [0.3.36]\n\n"
        "- feat: update llama.cpp to ggml-org/llama.cpp@0c1e57098\n\n"
        "## [0.3.35]\n- llama.cpp@abcdef0\n"
    )
    assert reference.commit_from_changelog(text, "0.3.36") == "0c1e57098"
    assert reference.commit_from_changelog(text, "0.3.35") == "abcdef0"
    assert reference.commit_from_changelog(text, "9.9.9") is None


def test_parse_cpuinfo() -> None:
    text = "".join(
        f"processor\t: {i}\nmodel name\t: Test CPU\nphysical id\t: 0\ncore id\t: {i // 2}\n"
        "flags\t\t: fpu sse4_2 avx avx2 avx512f\n\n"
        for i in range(4)
    )
    cpu = machine.parse_cpuinfo(text)
    assert cpu == {
        "cpu_model": "Test CPU",
        "physical_cores": 2,
        "cpu_flags": ["sse4_2", "avx", "avx2", "avx512f"],
    }


def test_prompts_and_samples() -> None:
    assert measure.counting_prompt(7, 3) == "7 8 9"
    assert measure.numbers_for(512, 5.0) == 102
    s = measure.ours_sample(
        {
            "prompt_eval_count": 10,
            "prompt_eval_duration": 10**8,
            "eval_count": 5,
            "eval_duration": 10**9,
            "load_duration": 2 * 10**9,
        }
    )
    assert (s.prompt_eval_tps, s.decode_tps, s.load_s) == (100, 5, 2)
    t = measure.llama_sample(
        {"timings": {"prompt_n": 10, "prompt_ms": 100, "predicted_n": 5, "predicted_ms": 1000}}
    )
    assert (t.prompt_eval_tps, t.decode_tps) == (100, 5)


def test_quick_defaults() -> None:
    ns = run.parse_args(["--quick"])
    assert (ns.clients, ns.prompt_tokens, ns.n_predict, ns.repeat) == ([1, 2, 4], 256, 64, 3)
    assert run.parse_args([]).clients == [1, 2, 4, 8]


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_quick_no_reference_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Start our server, create the model and measure tiny requests end to end."""
    model = bundled_model_file("smollm2")
    argv = [
        "--quick",
        "--no-reference",
        "--no-plots",
        "--repeat",
        "1",
        "--clients",
        "1,2",
        "--prompt-tokens",
        "32",
        "--n-predict",
        "8",
        "--model",
        str(model),
        "--out",
        str(tmp_path),
    ]
    assert run.main(argv) == 0
    (path,) = tmp_path.glob("*.json")
    result = results.read(path)
    ours = result["ours"]
    assert ours["decode_tps"]["median"] > 0 and ours["ttft_s"]["median"] > 0
    assert ours["load_s"]["median"] > 0
    assert set(ours["aggregate_tps"]) == {"1", "2"}
    assert ours["prefix_cache"]["turn2_ttft_s"] is not None
    assert set(ours["shared_prefix_tps"]) == {"2"}  # a shared prompt needs two clients
    assert set(ours["aggregate_stream_tps"]) == {"2"}
    assert ours["peak_rss_mib"]["server"] > 0 and ours["peak_rss_mib"]["runners"]
    assert set(result["ceiling"]["aggregate_tps"]) == {"1", "2"}
    assert result["ratios"]["aggregate_2_vs_ceiling"] > 0
    assert result["raw"] is None and result["llama_server"] is None
    assert not [n for n in result["notes"] if "failed" in n]
    assert "| Figure |" in capsys.readouterr().out
    assert (tmp_path / path.name.replace(".json", ".md")).is_file()
    assert servers.descendants(os.getpid()) == []  # every server and runner was stopped


@pytest.mark.integration
@pytest.mark.parametrize("unified", [False, True], ids=["streams", "unified"])
def test_batched_decode_rate_runs_on_the_bundled_model(unified: bool) -> None:
    """`python -m bench.batched` decodes several sequences together with either cache."""
    from bench import batched
    from ollamapy.runner.native import Model, init_backend

    init_backend()
    with Model(str(bundled_model_file("smollm2"))) as model:
        assert batched.decode_rate(model, n_seq=2, steps=2, threads=1, unified=unified) > 0


def test_embeddings_table_shows_the_quantized_import_beside_the_default() -> None:
    from bench import embeddings

    row = {
        "sentences": 256,
        "ours_sentences_per_s": 400.0,
        "st_sentences_per_s": 500.0,
        "ratio": 0.8,
        "ours_q8_0_sentences_per_s": 550.0,
        "q8_0_ratio": 1.1,
    }
    section = {
        "runs": 3,
        "batches": {"32": row},
        "quantized_variants": ["q8_0"],
        "target_ratio_at_32": 1.5,
        "meets_target": False,
        "reference": {"sentence_transformers": "6", "torch": "2", "torch_threads": 2},
    }
    text = embeddings.table({"embeddings": section})
    assert "ours q8_0" in text.splitlines()[0]
    assert "0.80x" in text and "1.10x" in text and "NOT met" in text
    rows = {row[0]: row[1] for row in report.detail_rows({"embeddings": section})}
    assert rows["Embeddings, batch 32, Q8_0 import"] == "**1.10**"
