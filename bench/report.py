"""Markdown rendering of a result: a ratio headline, then the measured figures."""

from __future__ import annotations

from typing import Any

from bench.stats import Summary

# (label, key in ours, key in the reference side, unit, which direction is better)
HEADLINE_SERVER = (
    ("Single-stream decode", "decode_tps", "t/s", "higher"),
    ("Prompt eval", "prompt_eval_tps", "t/s", "higher"),
    ("Time to first token", "ttft_s", "s", "lower"),
    ("Cold load", "load_s", "s", "lower"),
)


def fmt(value: float | None, digits: int = 2) -> str:
    """A number for a table cell; an em dash for a missing one."""
    if value is None:
        return "—"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.{digits}f}" if abs(value) >= 1 else f"{value:.3f}"


def fmt_ratio(value: float | None) -> str:
    """A ratio with two decimals, bold so the headline column stands out."""
    return "—" if value is None else f"**{value:.2f}**"


def fmt_summary(summary: Summary | None) -> str:
    """`median (min–max)` for a summary."""
    if summary is None:
        return "—"
    return f"{fmt(summary['median'])} ({fmt(summary['min'])}–{fmt(summary['max'])})"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _ratio_first(row: list[str]) -> list[str]:
    """[figure, ours, ref, ratio, better] -> [figure, ratio, ours, ref, better]."""
    return [row[0], row[3], row[1], row[2], row[4]]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [_row(header), _row(["---"] * len(header)), *[_row(r) for r in rows]]


def _clients(n: str) -> str:
    return f"{n} client" if int(n) == 1 else f"{n} clients"


CLIENT_FIGURES = (
    ("aggregate_tps", "aggregate", "Aggregate decode, {clients} (t/s) vs llama-server"),
    (
        "aggregate_stream_tps",
        "aggregate_stream",
        "Aggregate decode, {clients} streaming (t/s) vs llama-server",
    ),
    (
        "shared_prefix_tps",
        "shared_prefix",
        "Aggregate, {clients} sharing a system prompt (t/s) vs llama-server",
    ),
)
"""Figures measured per client count: (result key, ratio key prefix, row label)."""


def _per_client_rows(
    ours: dict[str, Any],
    ref: dict[str, Any],
    ratios: dict[str, Any],
    ratio_key: str,
    label: str,
) -> list[list[str]]:
    return [
        [
            label.format(clients=_clients(clients)),
            fmt_summary(ours.get(clients)),
            fmt_summary(ref.get(clients)),
            fmt_ratio(ratios.get(f"{ratio_key}_{clients}_vs_server")),
            "higher",
        ]
        for clients in sorted(set(ours) | set(ref), key=int)
    ]


def headline_rows(result: dict[str, Any]) -> list[list[str]]:
    """Rows of the ratio table: figure, ours, reference, ratio, better-when."""
    ours = result.get("ours") or {}
    raw = result.get("raw") or {}
    ref = result.get("llama_server") or {}
    ratios = result.get("ratios", {})
    rows = [
        [
            "pp (prompt eval) vs llama-bench",
            fmt_summary(ours.get("prompt_eval_tps")),
            fmt_summary(raw.get("pp_tps")),
            fmt_ratio(ratios.get("pp_vs_raw")),
            "higher",
        ],
        [
            "tg (decode, at the prompt's depth) vs llama-bench",
            fmt_summary(ours.get("decode_tps")),
            fmt_summary(raw.get("tg_tps")),
            fmt_ratio(ratios.get("tg_vs_raw")),
            "higher",
        ],
    ]
    for label, key, unit, better in HEADLINE_SERVER:
        rows.append(
            [
                f"{label} ({unit}) vs llama-server",
                fmt_summary(ours.get(key)),
                fmt_summary(ref.get(key)),
                fmt_ratio(ratios.get(f"{key}_vs_server")),
                better,
            ]
        )
    for key, ratio_key, label in CLIENT_FIGURES:
        rows.extend(_per_client_rows(ours.get(key, {}), ref.get(key, {}), ratios, ratio_key, label))
    rows.extend(_ceiling_rows(result))
    return rows


def _ceiling_rows(result: dict[str, Any]) -> list[list[str]]:
    """Ours against the engine ceiling (`bench.ceiling`) per client count, with
    llama-server's own ratio to it in the label: together they bound what the ratio
    between the two servers can become."""
    ours = (result.get("ours") or {}).get("aggregate_tps", {})
    ceiling = (result.get("ceiling") or {}).get("aggregate_tps", {})
    ratios = result.get("ratios", {})
    rows = []
    for clients in sorted(set(ours) & set(ceiling), key=int):
        server = ratios.get(f"server_aggregate_{clients}_vs_ceiling")
        rows.append(
            [
                f"Aggregate, {_clients(clients)} (t/s) vs the engine ceiling "
                f"(llama-server: {'—' if server is None else f'{server:.2f}'})",
                fmt_summary(ours.get(clients)),
                fmt_summary(ceiling.get(clients)),
                fmt_ratio(ratios.get(f"aggregate_{clients}_vs_ceiling")),
                "higher",
            ]
        )
    return rows


def detail_rows(result: dict[str, Any]) -> list[list[str]]:
    """Figures with no reference counterpart: prefix cache and peak memory."""
    ours = result.get("ours") or {}
    ref = result.get("llama_server") or {}
    prefix = ours.get("prefix_cache", {})
    rss = ours.get("peak_rss_mib", {})
    runners = rss.get("runners") or []
    rows = [
        ["Chat TTFT, turn 1 (s)", fmt_summary(prefix.get("turn1_ttft_s"))],
        ["Chat TTFT, turn 2, cached prefix (s)", fmt_summary(prefix.get("turn2_ttft_s"))],
        ["Turn 2 / turn 1", fmt_ratio(result.get("ratios", {}).get("prefix_turn2_vs_turn1"))],
        ["Peak RSS, our server (MiB)", fmt(rss.get("server"))],
        ["Peak RSS, our runner children (MiB)", ", ".join(fmt(r) for r in runners) or "—"],
        ["Peak RSS, llama-server (MiB)", fmt((ref.get("peak_rss_mib") or {}).get("server"))],
    ]
    embed = (result.get("embeddings") or {}).get("batches") or {}
    for batch, row in embed.items():
        rows.append(
            [f"Embeddings, batch {batch}: ours / sentence-transformers", fmt_ratio(row["ratio"])]
        )
        if "q8_0_ratio" in row:
            rows.append([f"Embeddings, batch {batch}, Q8_0 import", fmt_ratio(row["q8_0_ratio"])])
    pulled = result.get("pull") or {}
    if pulled:
        rows.append(["Pull: ours / skopeo", fmt_ratio(pulled.get("ours_over_skopeo"))])
        rows.append(["Pull: ours / file copy", fmt_ratio(pulled.get("ours_over_file_copy"))])
    rows += overhead_rows(result) + decode_rows(result)
    for name, state in (result.get("not_measured") or {}).items():
        rows.append([name.replace("_", " "), state])
    return rows


def _ms(summary: Summary | None) -> str:
    """A summary of seconds as `median (min–max)` in milliseconds."""
    if summary is None:
        return "—"
    return " ".join(
        [
            fmt(summary["median"] * 1000),
            f"({fmt(summary['min'] * 1000)}–{fmt(summary['max'] * 1000)})",
        ]
    )


def overhead_rows(result: dict[str, Any]) -> list[list[str]]:
    """`bench.overhead`: TTFT minus the engine's prompt time, per variant and size."""
    variants = (result.get("overhead") or {}).get("variants") or {}
    return [
        [
            f"Server overhead before the first token, {row['messages']} messages, "
            f"{name} (num_ctx {variant['num_ctx']}) (ms)",
            _ms(row.get("overhead_s")),
        ]
        for name, variant in variants.items()
        for row in variant.get("rows", [])
    ]


def decode_rows(result: dict[str, Any]) -> list[list[str]]:
    """`bench.decode`: the median ratio of interleaved pairs, engine and client clocks."""
    section = result.get("decode") or {}
    summary = section.get("summary") or {}
    rows = []
    labels = (
        ("engine_ratio", "eval_count/eval_duration"),
        ("client_ratio", "client"),
        ("clean_engine_ratio", "eval_count/eval_duration, clean pairs only"),
    )
    for key, label in labels:
        value = summary.get(key)
        if value is not None:
            rows.append(
                [
                    f"Streamed decode / llama-bench tg{section.get('n_predict', '')}, "
                    f"{label}, median of {value['n']} pairs (range)",
                    f"{fmt_ratio(value['median'])} ({value['min']:.2f}–{value['max']:.2f})",
                ]
            )
    return rows


def machine_line(result: dict[str, Any]) -> str:
    """One line describing the machine and the run settings."""
    m, c = result.get("machine", {}), result.get("config", {})
    return (
        f"{m.get('cpu_model', '?')}, {m.get('logical_cpus', '?')} logical CPUs, "
        f"flags {','.join(m.get('cpu_flags', [])) or '-'}; llama.cpp {m.get('llama_cpp', '?')}; "
        f"Python {m.get('python', '?')}. Model {c.get('model', '?')}, threads {c.get('threads')}, "
        f"num_ctx {c.get('num_ctx')}, prompt ~{c.get('prompt_tokens')} tokens, "
        f"n_predict {c.get('n_predict')}, repeat {c.get('repeat')}."
    )


def render(result: dict[str, Any]) -> str:
    """The whole Markdown report."""
    lines = [
        f"# ollamapy bench — {result.get('host', '?')} — {result.get('created', '?')}",
        "",
        machine_line(result),
        "",
        "Cells are median (min–max) of the repeats; ours / ref is the ratio of the medians.",
        "",
        *_table(
            ["Figure", "ours / ref", "ours", "reference", "better"],
            [_ratio_first(r) for r in headline_rows(result)],
        ),
        "",
        *_table(["Figure", "value"], detail_rows(result)),
    ]
    notes = result.get("notes") or []
    if notes:
        lines += ["", "Notes:", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"
